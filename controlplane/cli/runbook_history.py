"""erpctl runbook history: the runbook runs of this data directory, newest first."""

from __future__ import annotations

import click

from .options import emit, json_option, target_options
from .runbook_common import installation


def render(rows: list[dict]) -> str:
    if not rows:
        return "no runbook runs"
    lines = ["RUN                      RUNBOOK                   STATUS                STEP  OPERATOR  STARTED"]
    for r in rows:
        lines.append(f"{r['id']:<24} {r['runbook']:<25} {r['status']:<21} {r['step']:>4}  {r['operator']:<8}  "
                     f"{r['started_at']}" + (f"\n    waiting for {r['waiting']}" if r.get("waiting") else ""))
    return "\n".join(lines)


@click.command()
@target_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show the newest N runs.")
@json_option
def history(data_dir, database_url, limit):
    """List the runbook runs of this data directory, newest first: runbook, status (running, interrupted,
    waiting-confirmation, waiting-manual, failed, recovered, not-recovered), step, findings, operator."""
    from ..runbook import records

    inst = installation(data_dir, database_url)
    rows = []
    for rec in records.all_runs(inst.data_dir)[:limit]:
        rows.append({"id": rec.id, "runbook": rec.runbook, "status": records.shown_status(inst.data_dir, rec),
                     "step": rec.step, "waiting": rec.waiting, "findings": len(rec.findings),
                     "operator": rec.operator, "started_at": rec.started_at, "ended_at": rec.ended_at,
                     "steps_done": len(rec.steps)})
    emit({"runs": rows}, render(rows))
