"""erpctl drill list: every drill of this data directory, newest first."""

from __future__ import annotations

import click

from .options import emit, json_option, target, target_options

SHOWN = (("detection", "DETECT"), ("rto", "RTO"), ("rpo_writes", "RPO-W"))


def _cell(result: dict) -> str:
    measured, goal = result.get("measured"), result.get("target")
    mark = {True: "", False: "!", None: ""}[result.get("pass")]
    shown = "-" if measured is None else (f"{measured:g}" if isinstance(measured, (int, float)) else str(measured))
    return f"{shown}/{'-' if goal is None else goal}{mark}"


def render(rows: list[dict]) -> str:
    if not rows:
        return "no drills"
    lines = [f"{'ID':<44} {'STATE':<10} {'STARTED':<25} {'DETECT':>9} {'RTO':>9} {'RPO-W':>7}  SIGN-OFF"]
    for r in rows:
        if r["state"] == "unreadable":
            lines.append(f"{r['id']:<44} unreadable: {r['error']}")
            continue
        signed = ", ".join(str(s["role"]) for s in r["signoffs"]) or "not signed"
        cells = [_cell(r["results"][key]) for key, _ in SHOWN]
        lines.append(f"{r['id']:<44} {r['state']:<10} {str(r['started_at']):<25} {cells[0]:>9} {cells[1]:>9} "
                     f"{cells[2]:>7}  {signed}")
    lines.append("measured/target in seconds (RPO-W: acknowledged writes lost); ! marks a missed objective")
    return "\n".join(lines)


@click.command("list")
@target_options
@json_option
def list_(data_dir, database_url):
    """List the drills, newest first: scenario, state, start, detection/RTO/RPO measured against target,
    sign-offs."""
    from ..drills.review import list_drills

    rows = list_drills(target(data_dir, database_url).data_dir)
    emit({"drills": rows}, render(rows))
