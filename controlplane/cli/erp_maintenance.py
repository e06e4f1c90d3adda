"""erpctl erp maintenance: the ERP's read-only switch."""

from __future__ import annotations

import time

import click

from .. import erp_admin
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if not r["enabled"]:
        return "maintenance: off (the ERP accepts changes)"
    until = f"; expected to end in about {max(0, round(r['until'] - time.time()))} s" if r.get("until") else ""
    retry = f"; refused writes say Retry-After: {r['retry_after']} s" if r.get("retry_after") else ""
    return f"maintenance: on (the ERP is read-only){': ' + r['reason'] if r['reason'] else ''}{until}{retry}"


@click.command()
@click.argument("mode", type=click.Choice(["on", "off", "status"]))
@click.option("--reason", default="", help="Shown to users while maintenance is on.")
@click.option("--retry-after", "retry_after", type=click.IntRange(1), metavar="SECONDS",
              help="With on: how long clients told to wait should wait before retrying a write (the "
                   "Retry-After of the 503). Default: 60.")
@target_options
@json_option
def maintenance(mode, reason, retry_after, data_dir, database_url):
    """Switch maintenance mode on or off, or show it (status).

    While on, the ERP serves reads and refuses changes with 503 (Retry-After: --retry-after seconds;
    an upgrade sets its estimate of the read-only time left) and /readyz reports not ready.
    """
    if retry_after is not None and mode != "on":
        raise click.BadParameter("only with 'on'", param_hint="--retry-after")
    enabled = None if mode == "status" else mode == "on"
    result = erp_admin.set_maintenance(target(data_dir, database_url), enabled, reason, retry_after)
    emit(result, render(result))
