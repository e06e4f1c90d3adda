"""erpctl release remove VERSION: delete an installed release that nothing needs any more."""

from __future__ import annotations

import click

from .. import release
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    out = f"removed release {r['removed']} ({r['path']})"
    return out + (f"\nForced past: {r['forced_past']}; that rollback can no longer switch back." if r["forced_past"]
                  else "")


@click.command(name="remove")
@click.argument("version")
@click.option("--force", is_flag=True,
              help="Also remove the release the last finished upgrade came from (its rollback then cannot "
                   "switch back to it).")
@target_options
@json_option
def remove(version, force, data_dir, database_url):
    """Remove the installed release VERSION (its directory and environment) to free disk space.

    Refused for the current release, a release 'erpctl up' still serves, and the releases of an upgrade
    in progress; the release the last upgrade came from is kept for its rollback unless --force. The
    removal is recorded in the evidence log.
    """
    result = release.remove(target(data_dir, database_url), version, force=force)
    emit(result, render(result))
