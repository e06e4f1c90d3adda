"""erpctl drill approve: one person's approval of a live drill, for a maintenance window."""

from __future__ import annotations

import click

from .options import emit, json_option, target_options
from .runbook_common import installation, runbooks_option


@click.command()
@click.argument("scenario")
@click.option("--by", "by", required=True, metavar="NAME", help="The approver's full name.")
@click.option("--window", required=True, metavar="START/END",
              help="The maintenance window, ISO-8601 with a zone: 2026-12-05T22:00Z/2026-12-06T02:00Z.")
@click.option("--comment", default="", help="Why, or on what condition.")
@runbooks_option
@target_options
@json_option
def approve(scenario, by, window, comment, runbooks_dir, data_dir, database_url):
    """Record an approval of a live drill of SCENARIO (two people other than the operator must approve)."""
    from ..drills import approvals

    inst = installation(data_dir, database_url, runbooks_dir)
    row = approvals.approve(inst, scenario, by, approvals.parse_window(window), comment)
    emit(row, f"approved: {row['scenario']} by {row['by']} for {row['window']['start']} - {row['window']['end']} "
              f"(evidence record {row['evidence']['seq']})")
