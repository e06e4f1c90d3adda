"""erpctl drill run SCENARIO: run a drill scenario in its sandbox and record what it measured."""

from __future__ import annotations

import json
import os
import sys

import click

from ..errors import DrillFailed
from .options import json_option, state, target_options
from .runbook_common import installation, runbooks_option

COLOURS = {"passed": "green", "failed": "red", "aborted": "yellow"}


def progress(event: dict) -> None:
    """One line a phase change: JSON with --json, else a line for a person (coloured on a terminal)."""
    if state().json:
        click.echo(json.dumps(event, default=str))
    elif event["event"] == "phase":
        click.echo(f"{event['at'][11:19]}  " + click.style(f"{event['phase']:<12}", bold=True) + f" {event['text']}")
    else:
        m = event["measured"]
        click.secho(f"drill {event['drill']}: {event['state']}", fg=COLOURS.get(event["state"]), bold=True)
        alert = (f" (probes {m.get('probe_detection_seconds')} s, alert pending {m.get('alert_pending_seconds')} s, "
                 f"firing {m.get('alert_firing_seconds')} s)" if "alert_firing_seconds" in m
                 or "alert_pending_seconds" in m else "")
        click.echo(f"  detection {m.get('detection_seconds')} s{alert}, RTO {m.get('rto_seconds')} s, "
                   f"RPO {m.get('rpo_writes_lost')} write(s) / {m.get('rpo_seconds')} s, "
                   f"{m.get('acknowledged_writes')} acknowledged writes, {m.get('duration_seconds')} s in all")
        click.echo(f"  record: {event['record']}")
    sys.stdout.flush()


@click.command()
@click.argument("scenario")
@target_options
@runbooks_option
@click.option("--backend", type=click.Choice(["sqlite", "postgresql"]), default="sqlite", show_default=True,
              help="The sandbox's database (PostgreSQL: a scratch database on drill.postgresql_url's server).")
@click.option("--scale", type=click.IntRange(0, 1000), default=1, show_default=True,
              help="With --fresh: the demo data's scale (0: none, only the drill's own workload).")
@click.option("--fresh", is_flag=True, help="Seed the sandbox from scratch instead of restoring the latest backup.")
@click.option("--keep", is_flag=True, help="Keep the sandbox (directory, scratch database) to look at; its "
                                           "processes are stopped all the same.")
@click.option("--target", "target_", type=click.Choice(["sandbox", "live"]), default="sandbox", show_default=True,
              help="live: on this installation itself (needs approvals: erpctl drill approve).")
@click.option("--detect", "detect", type=click.Choice(["auto", "probes", "prometheus"]), default="auto",
              show_default=True, help="auto: the scenario's alert in a Prometheus of the drill's own where "
                                      "prometheus is installed, and the probes; probes: the probes only; "
                                      "prometheus: as auto, failing when Prometheus is not installed.")
@click.option("--alert-for", "alert_for", type=click.FloatRange(0, 3600), default=None,
              help="Shorten the expected alert's `for` to SECONDS (default: as shipped); the report says so.")
@json_option
def run(scenario, data_dir, database_url, runbooks_dir, backend, scale, fresh, keep, target_, detect, alert_for):
    """Run a drill scenario (runbooks/drills/SCENARIO.yaml) in a sandbox of its own.

    The sandbox (own data directory, free ports, on PostgreSQL a scratch database) is restored from the
    installation's latest backup (the restore verifies it first), or seeded with --fresh, and served by
    `erpctl up`. A business workload writes through the REST API and logs every acknowledged write. The
    fault is injected for real, detected through `erpctl status` (the control plane's probes, alerts and
    checks) and, where Prometheus is installed, by the scenario's alert firing in a Prometheus of the
    drill's own with the shipped rules (--alert-for shortens its `for`), recovered by the scenario's runbook (`erpctl runbook run NAME --yes`), and measured:
    detection, RTO, RPO. Everything is recorded in <data dir>/drills/<ID>/record.json and the evidence
    log. The clean-up always runs. --target live (erp-killed, erp-hung only; two approvals: erpctl drill
    approve) runs on this installation's own `erpctl up` with a drill-only user, deactivated at the end;
    other faults are refused (exit 78). Exit 0 when the drill passed, 76 when it failed or was aborted.
    """
    from ..drills import engine, scenario as scenarios

    inst = installation(data_dir, database_url, runbooks_dir)
    loaded = scenarios.find(inst.get("runbooks_dir"), scenario)
    opts = engine.Options(backend=backend, scale=scale, fresh=fresh, keep=keep, target=target_, detect=detect,
                          alert_for=alert_for)
    rec = engine.run(inst, loaded, opts, progress, dict(os.environ))
    if rec.state != "passed":
        raise DrillFailed(f"drill {rec.id} {rec.state}: " + "; ".join(f["text"] for f in rec.findings[:3]),
                          fix=f"Read its record ({rec.path(inst.data_dir)}): findings and timeline.")
    return 0
