"""What every command shares: the --json switch, the target options and rendering."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import click

from .. import config
from ..installation import Installation


@dataclass
class Options:
    """Global state of one erpctl run (main.py reads it to render errors)."""

    json: bool = False


def state(ctx: click.Context | None = None) -> Options:
    ctx = ctx or click.get_current_context()
    return ctx.ensure_object(Options)


def _set_json(ctx: click.Context, _param, value: bool) -> None:
    if value:
        state(ctx).json = True


def json_option(fn):
    """--json on a command as well as before it: `erpctl erp check --json` = `erpctl --json erp check`."""
    return click.option("--json", "json_output", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_json, help="Machine-readable output (JSON) on stdout.")(fn)


def target_options(fn):
    """--data-dir and --database-url, resolved by `target()` to the Installation."""
    fn = click.option("--database-url", metavar="URL",
                      help="Database URL (PostgreSQL: postgresql://user:pass@host/db). Default: [database] url "
                           "in erpctl.toml, else SQLite in the data directory. [env ERPCTL_DATABASE_URL]")(fn)
    fn = click.option("--data-dir", envvar="ERPCTL_DATA_DIR", metavar="DIR",
                      type=click.Path(file_okay=False, path_type=str),
                      help=f"Data directory (database, keys). Default: ./{config.DEFAULT_DATA_DIR} "
                           "[env ERPCTL_DATA_DIR]")(fn)
    return fn


def target(data_dir: str | None, database_url: str | None, **flags) -> Installation:
    """The installation the command acts on (a config.Target), with the settings given as flags."""
    return Installation.open(data_dir, database_url, **flags)


def emit(data, human: str | None = None) -> None:
    """Print the result: JSON when asked for, else the human text (if any)."""
    if state().json:
        click.echo(json.dumps(data, default=str))
    elif human is not None:
        click.echo(human)
    sys.stdout.flush()
