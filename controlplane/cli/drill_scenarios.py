"""erpctl drill scenarios: the drill scenarios, validated."""

from __future__ import annotations

import click

from .options import emit, json_option
from .runbook_common import installation, runbooks_option


@click.command()
@runbooks_option
@json_option
def scenarios(runbooks_dir):
    """List the drill scenarios (runbooks/drills/*.yaml), each validated: name, fault, runbook, objectives.
    An invalid one stops the listing with its file, key and fix (exit 74)."""
    from ..drills import scenario as sc

    inst = installation(None, None, runbooks_dir)
    rows = []
    for loaded in sc.load_all(inst.get("runbooks_dir")):
        s = loaded.scenario
        rows.append({"name": s.name, "title": s.title, "fault": s.fault.kind, "runbook": s.recover.runbook,
                     "destructive": s.destructive, "objectives": s.objectives.model_dump(), "file": str(loaded.path)})
    human = "\n".join(f"{r['name']:<26} {r['fault']:<26} {r['runbook']:<22} {r['title']}" for r in rows)
    emit({"scenarios": rows}, human or "no drill scenarios")
