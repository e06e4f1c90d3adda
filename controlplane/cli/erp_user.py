"""erpctl erp user add|list|passwd|logout|deactivate|mfa-reset: the ERP's users, for operators."""

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
@click.option("--service", is_flag=True,
              help="A tool's unattended user (a probe, a drill's workload): it logs in without a second factor "
                   "(mfa_roles does not apply) and the ERP's API cannot change it.")
@target_options
@json_option
def add(username, role, full_name, password_stdin, service, data_dir, database_url):
    """Create user USERNAME with ROLE (passwords: at least 12 characters, not the username, not a common password)."""
    password = read_password(password_stdin)
    result = erp_admin.add_user(target(data_dir, database_url), username, password, role, full_name, service=service)
    emit(result, f"created {'service ' if service else ''}user {result['username']} (role {result['role']}, "
                 f"id {result['id']})")


def _render_users(rows: list[dict]) -> str:
    lines = [f"{'USERNAME':<24} {'ROLE':<11} {'ACTIVE':<6} {'MFA':<4} LAST LOGIN"]
    for r in rows:
        mfa = "-" if r["mfa"] is None else ("yes" if r["mfa"] else "no")
        name = r["username"] + (" (service)" if r["service"] else "")
        lines.append(f"{name:<24} {r['role']:<11} {'yes' if r['active'] else 'no':<6} {mfa:<4} "
                     f"{r['last_login'] or 'never'}")
    return "\n".join(lines)


@user.command("list")
@target_options
@json_option
def list_(data_dir, database_url):
    """List the users: username, role, active, MFA (- when the schema has none), last login."""
    rows = erp_admin.list_users(target(data_dir, database_url))
    emit(rows, _render_users(rows))


@user.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the temporary password from standard input (else one is generated and printed).")
@click.option("--service", is_flag=True,
              help="USERNAME is a service user (the business probe's, a drill's): set the password read with "
                   "--password-stdin as its own (rotated: no change at its next login).")
@target_options
@json_option
def passwd(username, password_stdin, service, data_dir, database_url):
    """Reset USERNAME's password: a temporary one, printed (or read with --password-stdin), that the user
    must change at the next login before anything else. Every session and API token of the user ends.
    With --service, a service user's password is rotated to the one read from standard input.
    Recorded in the ERP's audit log and the evidence log (never the password)."""
    if service:
        if not password_stdin:
            raise click.UsageError("--service needs --password-stdin: the new password, on standard input")
        result = erp_admin.set_service_password(target(data_dir, database_url), username, read_password(True))
        emit(result, f"rotated the password of service user {username}; its tokens are revoked")
        return
    password = read_password(True) if password_stdin else None
    result = erp_admin.reset_password(target(data_dir, database_url), username, password)
    shown = result["temporary_password"] if password is None else "(the one given)"
    emit(result if password is None else {k: v for k, v in result.items() if k != "temporary_password"},
         f"reset the password of {username}; {result['sessions_ended']} session(s) ended\n"
         f"temporary password: {shown}\nthe user must change it at the next login")


@user.command("logout")
@click.argument("username")
@target_options
@json_option
def logout(username, data_dir, database_url):
    """End every session and API token of USERNAME (they log in again). Recorded in the ERP's audit log
    and the evidence log."""
    result = erp_admin.logout_user(target(data_dir, database_url), username)
    emit(result, f"logged {username} out everywhere: {result['sessions_ended']} session(s) ended")


@user.command("deactivate")
@click.argument("username")
@target_options
@json_option
def deactivate(username, data_dir, database_url):
    """USERNAME can no longer log in; its sessions and tokens stop working. The last active admin cannot
    be deactivated (exit 5). Recorded in the ERP's audit log and the evidence log."""
    result = erp_admin.deactivate_user(target(data_dir, database_url), username)
    emit(result, f"deactivated {username} (role {result['role']})")


@user.command("mfa-reset")
@click.argument("username")
@target_options
@json_option
def mfa_reset(username, data_dir, database_url):
    """Remove USERNAME's multi-factor login (lost phone): the user logs in with the password alone, and is
    led to set it up again when its role requires it. Recorded in the ERP's audit log and the evidence log."""
    result = erp_admin.mfa_reset(target(data_dir, database_url), username)
    emit(result, f"reset the multi-factor login of {result['username']}" if result["reset"]
         else f"user {result['username']} had no multi-factor login; nothing to reset")
