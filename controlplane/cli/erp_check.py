"""erpctl erp check: run the ERP's business invariants."""

from __future__ import annotations

import click

from .. import erp_admin
from ..errors import InvariantsViolated
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if r["ok"]:
        return f"ok: no violations ({len(r['checks'])} checks in {r['seconds']} s)"
    lines = [f"{len(r['violations'])} violation(s):"]
    lines += [f"  [{v['check']}] {v['detail']}" for v in r["violations"]]
    return "\n".join(lines)


@click.command()
@target_options
@json_option
def check(data_dir, database_url):
    """Check the books, the stock and the documents (exit 0 when consistent).

    Journal entries balance, the trial balance is zero, on-hand stock equals the done moves,
    document totals equal their lines, no row points at a missing one. The result is recorded in the
    data directory like the scheduled check's (erpctl status, the InvariantViolations alert).
    """
    t = target(data_dir, database_url)
    result = erp_admin.check(t)
    erp_admin.record_check(t, result)
    emit(result, render(result))
    if not result["ok"]:
        raise InvariantsViolated(f"{len(result['violations'])} invariant violation(s) found (listed on stdout)",
                                 fix=_fix({v["check"] for v in result["violations"]}))


def _fix(kinds: set[str]) -> str:
    """What to do about the kinds found (the InvariantViolations runbook has the steps)."""
    stock = ("On-hand stock that differs from its moves: 'erpctl erp maintenance on', 'erpctl erp repair "
             "stock-cache --yes', 'erpctl erp maintenance off'.")
    others = ("Find what wrote the bad rows (audit log), correct them through the ERP (reversals) or restore "
              "a verified backup; then check again.")
    if kinds == {erp_admin.STOCK_CACHE_CHECK}:
        return stock
    return f"{stock} Other kinds: {others}" if erp_admin.STOCK_CACHE_CHECK in kinds else others
