"""erpctl drill finding ID add|done: a finding of a drill with its remediation item (action, owner, due date),
or the remediation of a finding done."""

from __future__ import annotations

import click

from .options import emit, json_option, target, target_options


@click.command()
@click.argument("drill_id", metavar="ID")
@click.argument("verb", metavar="add|done", type=click.Choice(["add", "done"]))
@click.option("--text", help="add: what was found.")
@click.option("--severity", type=click.Choice(["high", "medium", "low"]), help="add: how serious it is.")
@click.option("--action", help="add: the remediation, what will be done about it.")
@click.option("--owner", help="add: who owns the remediation.")
@click.option("--due", metavar="YYYY-MM-DD", help="add: when the remediation is due.")
@click.option("--finding", "finding_id", metavar="F<n>", help="done: the finding whose remediation is done.")
@target_options
@json_option
def finding(drill_id, verb, text, severity, action, owner, due, finding_id, data_dir, database_url):
    """Add a finding to a finished drill, with its remediation item (--action, --owner, --due); or mark a
    finding's remediation done (done --finding F1)."""
    from ..drills import review

    inst = target(data_dir, database_url)
    if verb == "done":
        if not finding_id:
            raise click.UsageError("done needs --finding F<n>")
        row = review.remediation_done(inst, drill_id, finding_id)
        emit(row, f"remediation of {finding_id} done ({len(row['done'])} item(s)) in drill {drill_id}")
        return
    if not text or not severity:
        raise click.UsageError("add needs --text and --severity")
    row = review.add_finding(inst, drill_id, text, severity, owner=owner, due=due, action=action)
    item = row.get("remediation")
    emit(row, f"finding {row['finding']['id']} added to drill {drill_id}" +
         (f"; remediation owned by {item['owner'] or '(nobody)'}, due {item['due'] or '(no date)'}" if item else ""))
