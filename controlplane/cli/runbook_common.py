"""What the runbook commands share: where the runbooks are, the installation, the reporter."""

from __future__ import annotations

import sys

import click

from .options import state, target


def runbooks_option(fn):
    return click.option("--runbooks-dir", metavar="DIR", type=click.Path(file_okay=False, path_type=str),
                        help="The runbooks to read. Default: the runbooks shipped with erpctl. "
                             "[env ERPCTL_RUNBOOKS_DIR; erpctl.toml [runbooks] dir]")(fn)


def installation(data_dir, database_url, runbooks_dir=None):
    return target(data_dir, database_url, runbooks_dir=runbooks_dir)


def reporter():
    from ..runbook.report import Reporter

    return Reporter(state().json)


def interactive() -> bool:
    """Someone can answer: stdin is a terminal."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:
        return False
