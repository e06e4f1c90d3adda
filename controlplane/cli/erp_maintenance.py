"""erpctl erp maintenance: the ERP's read-only switch."""

from __future__ import annotations

import click

from .. import erp_admin
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if not r["enabled"]:
        return "maintenance: off (the ERP accepts changes)"
    return f"maintenance: on (the ERP is read-only){': ' + r['reason'] if r['reason'] else ''}"


@click.command()
@click.argument("mode", type=click.Choice(["on", "off", "status"]))
@click.option("--reason", default="", help="Shown to users while maintenance is on.")
@target_options
@json_option
def maintenance(mode, reason, data_dir, database_url):
    """Switch maintenance mode on or off, or show it (status).

    While on, the ERP serves reads and refuses changes with 503 and /readyz reports not ready.
    """
    enabled = None if mode == "status" else mode == "on"
    result = erp_admin.set_maintenance(target(data_dir, database_url), enabled, reason)
    emit(result, render(result))
