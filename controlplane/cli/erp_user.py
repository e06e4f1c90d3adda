"""erpctl erp user add: create an ERP user with a role."""

from __future__ import annotations

import sys

import click

from erp_core.errors import ValidationFailed
from erp_core.ops import ROLES

from .. import erp_admin
from .options import emit, json_option, target, target_options


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.read()
        password = text[:-1] if text.endswith("\n") else text  # one trailing newline (echo, heredoc)
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise click.UsageError("no password given: pass --password-stdin and send the password on standard input")
    if password != password.strip():
        # The API's login strips surrounding whitespace: such a password could never log in there.
        raise ValidationFailed("the password starts or ends with whitespace", field="password",
                               fix="Choose a password without leading or trailing spaces.")
    return password


@click.group()
def user():
    """ERP users."""


@user.command("add")
@click.argument("username")
@click.option("--role", required=True, metavar="ROLE", help=f"One of: {', '.join(ROLES)}.")
@click.option("--full-name", default="", help="The user's full name.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (else it is asked for on a terminal).")
@target_options
@json_option
def add(username, role, full_name, password_stdin, data_dir, database_url):
    """Create user USERNAME with ROLE (passwords: at least 10 characters)."""
    password = read_password(password_stdin)
    result = erp_admin.add_user(target(data_dir, database_url), username, password, role, full_name)
    emit(result, f"created user {result['username']} (role {result['role']}, id {result['id']})")
