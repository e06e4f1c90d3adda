"""erpctl console user add|list|remove: the ops console's own accounts (operator, auditor)."""

from __future__ import annotations

import click

from ..console import users
from .erp_user import read_password
from .options import emit, json_option, target, target_options


@click.group()
def user():
    """The ops console's accounts: operators (read, start actions) and auditors (read only)."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(users.ROLES),
              help="operator: reads every page, starts backups, verifications, upgrade steps and drills; "
                   "auditor: reads every page, starts nothing.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (else it is asked for on a terminal).")
@target_options
@json_option
def add(name, role, password_stdin, data_dir, database_url):
    """Make console account NAME with ROLE (a password of at least 12 characters, not the name). Stored
    as an argon2id hash in the data directory's console-users.json (mode 0600); not an ERP user."""
    t = target(data_dir, database_url)
    password = read_password(password_stdin)
    result = users.add(t.data_dir, name, role, password)
    emit(result, f"console account {result['name']} ({result['role']}) added; log in at the ops console's /console/")


@user.command("list")
@target_options
@json_option
def list_(data_dir, database_url):
    """List the console accounts (name, role, language, created)."""
    rows = users.listing(target(data_dir, database_url).data_dir)
    emit({"users": rows}, "\n".join(f"{r['name']:<24} {r['role']:<9} {r['lang'] or '-':<8} {r['created_at']}"
                                    for r in rows) or "no console accounts ('erpctl console user add' makes one)")


@user.command("remove")
@click.argument("name")
@target_options
@json_option
def remove(name, data_dir, database_url):
    """Remove console account NAME (its open sessions end at their next request)."""
    result = users.remove(target(data_dir, database_url).data_dir, name)
    emit(result, f"console account {name} removed")
