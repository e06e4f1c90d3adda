"""erpctl stop: stop this installation's erpctl up, and wait until it has exited."""

from __future__ import annotations

import click

from .. import config
from ..installation import Installation
from ..lifecycle.stop import DEFAULT_TIMEOUT_SECONDS, stop as stop_service
from .options import emit, json_option


def render(r: dict) -> str:
    if not r["stopped"]:
        return f"nothing to stop: {r['message']}"
    lines = []
    if r["was_running"]:
        how = "cleanly (SIGTERM)" if r["signal"] == "SIGTERM" else f"by {r['signal']} after the grace"
        lines.append(f"stopped erpctl up (pid {r['pid']}) of {r['data_dir']} {how} in {r['seconds']:.1f} s")
    else:
        lines.append(f"erpctl up of {r['data_dir']} had ended already ({r['message']})")
    if r["erp_child"]:
        lines.append(f"stopped its ERP left behind (pid {r['erp_child']['pid']}, {r['erp_child']['signal']})")
    return "\n".join(lines)


@click.command()
@click.option("--data-dir", envvar="ERPCTL_DATA_DIR", metavar="DIR", type=click.Path(file_okay=False, path_type=str),
              help=f"Data directory of the installation. Default: ./{config.DEFAULT_DATA_DIR} [env ERPCTL_DATA_DIR]")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_SECONDS,
              show_default=True, metavar="S", help="Seconds to wait for a clean exit before SIGKILL.")
@json_option
def stop(data_dir, timeout):
    """Stop this installation's erpctl up and wait until it has exited.

    Only the erpctl up recorded in the data directory's runtime.json is signalled, after checking that
    its pid is still that process (same start time) serving this data directory: other installations
    on the machine, and a process that reuses the pid, are left alone. SIGTERM first (the ERP child,
    the ops console and the scheduled jobs stop in order), SIGKILL after --timeout. An ERP left behind
    by a killed erpctl up is stopped too. Nothing running: exit 0, saying so. Recorded in the
    evidence log (erpctl.stop).
    """
    inst = Installation.open(data_dir, strict=False)
    result = stop_service(inst, timeout)
    emit(result, render(result))
