"""erpctl restart: stop this installation's erpctl up and start it again exactly as it served."""

from __future__ import annotations

import click

from ..lifecycle import restart as lifecycle
from ..lifecycle.stop import DEFAULT_TIMEOUT_SECONDS
from .options import emit, json_option, target, target_options


def _plan(p: dict) -> str:
    return f"host {p['host']}, ERP port {p['erp_port']}, ops port {p['ops_port']}, database {p['database']}"


def render(r: dict) -> str:
    stopped = r["stopped"]
    if stopped["stopped"] and stopped["was_running"]:
        old = f"stopped pid {stopped['pid']} ({stopped['signal']}, {stopped['seconds']:.1f} s)"
    else:
        old = f"nothing was running ({stopped['message']})"
    return "\n".join([
        f"restarted erpctl up of {r['data_dir']}: {old}; now pid {r['pid']}",
        f"  {_plan(r['plan'])}",
        f"  ERP {r['erp_url']} ready after {r['ready_seconds']:.1f} s"
        + (f" (down {r['down_seconds']:.1f} s)" if r["down_seconds"] is not None else ""),
        *([f"  maintenance mode is on ({r['maintenance'].get('reason') or 'no reason given'}): read-only until "
            "'erpctl erp maintenance off'"] if r.get("maintenance") else []),
        f"  Ops {r['ops_url']}",
        f"  output: {r['log']}"])


def render_dry_run(r: dict) -> str:
    now = f"erpctl up runs (pid {r['pid']})" if r["running"] else f"nothing runs ({r['message']})"
    return "\n".join([f"{r['data_dir']}: {now}", f"restart would start: {_plan(r['plan'])}",
                      f"  {' '.join(r['plan']['command'])}", f"  output: {r['log']}"])


@click.command()
@target_options
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_SECONDS,
              show_default=True, metavar="S", help="Seconds to wait for the old erpctl up's clean exit before SIGKILL.")
@click.option("--ready-timeout", type=click.FloatRange(min=0, min_open=True), default=lifecycle.READY_TIMEOUT_SECONDS,
              show_default=True, metavar="S", help="Seconds to wait for the new ERP's /readyz to answer 200.")
@click.option("--dry-run", is_flag=True, help="Say what would be stopped and started; change nothing.")
@json_option
def restart(data_dir, database_url, timeout, ready_timeout, dry_run):
    """Stop this installation's erpctl up and start it again exactly as it served, in the background.

    The host and ports are the ones erpctl up recorded; the database URL comes from --database-url,
    ERPCTL_DATABASE_URL or erpctl.toml [database] url and must name the database that was served (its
    password is never recorded). Refused, with nothing stopped, when that cannot be done: a PostgreSQL
    installation with no URL set here (never an empty SQLite instead), another database, nothing
    recorded, or a systemd unit that runs it (systemctl restart it). Stops as 'erpctl stop' does, then
    waits until the ERP's /readyz answers 200; the new erpctl up's output is appended to erpctl-up.log
    in the data directory. Recorded in the evidence log (erpctl.restart).
    """
    inst = target(data_dir, database_url)
    if dry_run:
        result = lifecycle.dry_run(inst)
        emit(result, render_dry_run(result))
        return
    result = lifecycle.restart(inst, timeout, ready_timeout)
    emit(result, render(result))
