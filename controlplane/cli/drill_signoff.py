"""erpctl drill sign-off: a person signs a finished drill off, in a role."""

from __future__ import annotations

import click

from .options import emit, json_option, target, target_options


@click.command("sign-off")
@click.argument("drill_id", metavar="ID")
@click.option("--role", required=True, help="The role signing: drill lead, business owner, auditor...")
@click.option("--name", required=True, help="The full name of the person signing.")
@click.option("--comment", default="", help="What the sign-off says (reservations, conditions).")
@target_options
@json_option
def sign_off(drill_id, role, name, comment, data_dir, database_url):
    """Sign a finished drill off (recorded in its record and the evidence log)."""
    from ..drills.review import sign_off as record_sign_off

    row = record_sign_off(target(data_dir, database_url), drill_id, role, name, comment)
    emit(row, f"signed off: drill {drill_id} by {row['name']} as {row['role']} at {row['at']}")
