"""erpctl upgrade plan: what an upgrade would do, stage by stage, before doing any of it."""

from __future__ import annotations

import click

from ..upgrade import engine
from .options import emit, json_option, target, target_options


def render(p: dict) -> str:
    lines = [f"upgrade {p['from_version']} -> {p['to_version']} on {p['database']} ({p['engine']}): "
             f"schema {p['from_revision']} -> {p['to_revision']}",
             f"  migrations: " + ", ".join(f"{m['revision']} ({m['stage']})" for m in p["migrations"]),
             f"  writer stall budget {p['stall_budget_ms']} ms; backfill estimated at "
             f"{p['estimated_rows_per_second']} rows/s", ""]
    lines.append(f"  {'stage':<10} {'rows':>10} {'est. s':>8}  lock / rollback")
    for s in p["stages"]:
        mark = "  <- point of no return" if s.get("point_of_no_return") else ""
        lines.append(f"  {s['stage']:<10} {s['rows']:>10} {s['seconds']:>8}  {s['lock']}{mark}")
        lines.append(f"  {'':<10} {'':>10} {'':>8}  rollback: {s['rollback']}")
    lines.append(f"\n  about {p['estimated_seconds']} s in all; the ERP serves writes during expand and backfill, "
                 "reads only during verify, switch and contract")
    return "\n".join(lines)


@click.command()
@click.option("--to", "to_version", metavar="VERSION", help="The release to upgrade to (default: this erpctl's).")
@click.option("--stall-budget-ms", type=click.FloatRange(1), help="Longest a writer may wait for a backfill batch.")
@target_options
@json_option
def plan(to_version, stall_budget_ms, data_dir, database_url):
    """Print each stage with its lock level, estimated rows and time, its rollback method and the
    point of no return. Changes nothing."""
    p = engine.plan(engine.UpgradeOptions(target=target(data_dir, database_url), to_version=to_version,
                                          stall_budget_ms=stall_budget_ms))
    emit(p, render(p))
