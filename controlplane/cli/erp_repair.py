"""erpctl erp repair stock-cache: rebuild the on-hand cache from the done stock moves."""

from __future__ import annotations

import sys

import click

from .. import erp_admin
from ..errors import InvariantsViolated
from .options import emit, json_option, state, target, target_options

def _rows(r: dict) -> list[str]:
    if not r["count"]:
        return ["stock cache: every on-hand row equals its done moves; nothing to rebuild"]
    lines = [f"stock cache: {r['count']} on-hand row(s) differ from the done moves"]
    lines += [f"  {c['ref']} (product {c['product_id']}, warehouse {c['warehouse_id']}): "
              f"{c['old'] if c['old'] is not None else '(no row)'} -> {c['new']}" for c in r["corrections"]]
    return lines


def render(r: dict) -> str:
    lines = _rows(r)
    if not r["applied"]:
        if r["count"]:
            lines.append("dry run: nothing changed. In maintenance mode 'erpctl erp repair stock-cache --yes' "
                         "rewrites them.")
        return "\n".join(lines)
    if r["count"]:
        lines.append(f"rebuilt in one transaction (digest {r['digest'][:16]}), written in the ERP's audit log "
                     "and the evidence log")
    check = r["check"]
    others = [v for v in check["violations"] if v["check"] != erp_admin.STOCK_CACHE_CHECK]
    if check["ok"]:
        lines.append(f"invariants: ok ({len(check['checks'])} checks), recorded (the alert resolves)")
    elif others:
        lines.append(f"invariants: {len(others)} violation(s) of other kinds remain (not the stock cache's):")
        lines += [f"  [{v['check']}] {v['detail']}" for v in others]
    return "\n".join(lines)


@click.group()
def repair():
    """Rebuild derived data from the records it is derived from."""


@repair.command("stock-cache")
@click.option("--yes", is_flag=True, help="Rewrite without asking.")
@click.option("--dry-run", is_flag=True, help="Show the rows that would change; change nothing (any mode).")
@target_options
@json_option
def stock_cache(yes, dry_run, data_dir, database_url):
    """Rebuild the on-hand quantities from the done stock moves.

    Every (product, warehouse) whose on-hand quantity differs from its done moves in minus out is
    rewritten, in one transaction that locks the stock tables, and printed old -> new. Runs only while
    the ERP is in maintenance mode (exit 5 otherwise, nothing changed): switch it on first with 'erpctl erp
    maintenance on', off afterwards. Each correction goes to the ERP's audit log, their count and digest
    to the evidence log; the invariants are then checked again and the result recorded (erpctl status,
    the InvariantViolations alert). Exit 5 also when the moves themselves are inconsistent (more out than
    in): no cache rebuild fixes that.
    """
    t = target(data_dir, database_url)
    if not dry_run and not yes:
        if state().json or not sys.stdin.isatty():
            raise click.UsageError("rebuilding rewrites on-hand quantities: pass --yes (or --dry-run to look)")
        preview = erp_admin.repair_stock_cache(t, apply=False)
        click.echo("\n".join(_rows(preview)))
        if not preview["count"]:
            return
        click.confirm("Rewrite these on-hand rows from the done moves?", abort=True, err=True)
    result = erp_admin.repair_stock_cache(t, apply=not dry_run)
    emit(result, render(result))
    left = result["check"]["violations"] if result["applied"] else []
    if any(v["check"] == erp_admin.STOCK_CACHE_CHECK for v in left):
        raise InvariantsViolated("on-hand stock still differs from the done moves after the rebuild",
                                 fix="Run 'erpctl erp check' to see the rows; a writer outside the ERP may "
                                     "be changing the stock tables.")
