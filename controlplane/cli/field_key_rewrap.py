"""erpctl field-key rewrap: re-encrypt release 1.0's encrypted fields bound to their row."""

from __future__ import annotations

import click

from .. import fieldkeys
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if not r["rewrapped"]:
        return "ok: every encrypted value is already bound to its row"
    done = ", ".join(f"{k} {v}" for k, v in sorted(r["rewrapped"].items()))
    return f"rewrapped: {done} (bound to their row; {r['passes']} pass(es))"


@click.command()
@click.option("--batch", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Rows per transaction.")
@target_options
@json_option
def rewrap(batch, data_dir, database_url):
    """Re-encrypt release 1.0's encrypted fields bound to their table, column and row (after the upgrade's
    contract step).

    Release 1.0's values (v1) become bound to their row (v2). Run it once the upgrade to 1.1 is complete (after its contract step): release 1.0 cannot read a bound
    value, so before that it is refused (exit 121) and nothing changes. Needs the field key in use
    (ERP_FIELD_KEY, else field.key). Batches of --batch rows, each its own transaction; the ERP may serve
    meanwhile; run again after an interruption. Recorded in the evidence log (field_key.rewrap) and the ERP's
    audit log."""
    result = fieldkeys.rewrap(target(data_dir, database_url), batch=batch)
    emit(result, render(result))
