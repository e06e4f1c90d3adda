"""erpctl upgrade apply: preflight, verified backup, expand, backfill, verify, switch, contract."""

from __future__ import annotations

import click

from ..upgrade import engine
from .options import emit, json_option, target_options
from .upgrade_common import erp_options, options, render_summary


@click.command()
@click.option("--to", "to_version", metavar="VERSION", help="The release to upgrade to (default: this erpctl's).")
@click.option("--confirm-contract", is_flag=True,
              help="Run the contract stage (the point of no return) right after the switch.")
@click.option("--soak", "soak_seconds", type=click.FloatRange(0), metavar="SECONDS",
              help="Run the contract stage after the new release served this long without a problem.")
@click.option("--stall-budget-ms", type=click.FloatRange(1),
              help="Longest a writer may wait for a backfill batch (default 100 on SQLite, 500 on PostgreSQL).")
@click.option("--long-transaction-seconds", type=click.FloatRange(0), default=60, show_default=True,
              help="PostgreSQL: refuse to start while a transaction has been open this long.")
@erp_options
@target_options
@json_option
def apply(to_version, confirm_contract, soak_seconds, stall_budget_ms, long_transaction_seconds, **kw):
    """Upgrade the ERP to a new release, online, in resumable stages.

    Without --confirm-contract or --soak it stops after the switch, with both releases able to run on
    the schema: 'erpctl upgrade resume --confirm-contract' finishes, 'erpctl upgrade rollback' goes back
    without losing a row. A failure before contract rolls back by itself. Killed, it is continued by
    'erpctl upgrade resume' or undone by 'erpctl upgrade rollback'.
    """
    r = engine.apply(options(**kw, to_version=to_version, confirm_contract=confirm_contract,
                             soak_seconds=soak_seconds, stall_budget_ms=stall_budget_ms,
                             long_transaction_seconds=long_transaction_seconds))
    emit(r, render_summary(r))
