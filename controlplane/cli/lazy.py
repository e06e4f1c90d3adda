"""A click group whose subcommands are imported only when they run.

Each lazy subcommand is a row `name: (target, one-line help)` with target "module:attribute" in
controlplane.cli. The group's --help lists the rows from the table, so `erpctl --help` imports no
command module (and none of what they import: SQLAlchemy, Flask, boto3, numpy...). The one-line
help in the table is the command's own first sentence; tests/controlplane/test_cli.py checks that
the table and the real commands agree.
"""

from __future__ import annotations

import importlib

import click

PACKAGE = "controlplane.cli"


class LazyGroup(click.Group):
    """A group with eager subcommands (added as usual) and lazy ones (a table)."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return self.commands.get(cmd_name)
        command = load(self.lazy[cmd_name][0])
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists commands, with the lazy ones' help taken from the table (nothing imported)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name) or click.Command(name, help=self.lazy[name][1])
            if not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


def load(target: str) -> click.Command:
    """Import "module:attribute" from controlplane.cli: the command object."""
    module, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(f"{PACKAGE}.{module}"), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{PACKAGE}.{target} is not a click command")
    return command
