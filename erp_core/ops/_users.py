"""Service users: the accounts operators' tools log in with (create, rotate a password, deactivate)."""

from __future__ import annotations

from ..domain.permissions import ROLES
from ..services import auth as _auth
from ..services import mfa as _mfa

__all__ = ["ROLES", "create_user", "set_password", "deactivate_user", "mark_service_user", "list_users",
           "reset_password", "logout_user", "mfa_reset"]


def _facts(user) -> dict:
    return {"id": user.id, "username": user.username, "role": user.role, "full_name": user.full_name,
            "active": bool(user.active)}


def create_user(s, username: str, password: str, role: str, full_name: str = "", service: bool = False) -> dict:
    """A new user of one of ROLES. ValidationFailed for an unknown role or a short password,
    Conflict when the username is taken. service=True: the user of an operator's tool (the business
    probe...), which the ERP's API refuses to change (role, active, name): only these functions do."""
    return _facts(_auth.add_user(s, username, password, role, full_name=full_name, service=service))


def mark_service_user(s, username: str) -> dict:
    """Make an existing user a service user (NotFound for no such user)."""
    return _facts(_auth.mark_service(s, username))


def set_password(s, username: str, password: str) -> dict:
    """Rotate the password of an existing user (NotFound otherwise): it is active afterwards and its
    bearer tokens are revoked."""
    return _facts(_auth.set_password(s, username, password))


def deactivate_user(s, username: str) -> dict:
    """The user can no longer log in; its bearer tokens stop working (NotFound for no such user;
    Conflict for the last active administrator)."""
    return _facts(_auth.deactivate(s, username))


def list_users(s) -> list[dict]:
    """Every user: username, role, active, service, mfa (True/False, None when the schema has no MFA
    table yet), last_login (ISO time of the last successful login, None if never)."""
    from sqlalchemy import func, inspect, select

    from ..models import LoginAttempt, User

    columns = {c["name"] for c in inspect(s.connection()).get_columns("users")}
    last = dict(s.execute(select(LoginAttempt.username, func.max(LoginAttempt.at))
                          .where(LoginAttempt.succeeded.is_(True)).group_by(LoginAttempt.username)).all())
    with_mfa = _mfa.enrolled_ids(s)
    names = ["id", "username", "role", "active"] + [c for c in ("service",) if c in columns]
    rows = s.execute(select(*(User.__table__.c[n] for n in names)).order_by(User.__table__.c.username)).all()
    out = []
    for row in rows:
        r = dict(zip(names, row))
        at = last.get(r["username"])
        out.append({"id": r["id"], "username": r["username"], "role": r["role"], "active": bool(r["active"]),
                    "service": bool(r.get("service", False)),
                    "mfa": r["id"] in with_mfa if with_mfa is not None else None,
                    "last_login": at.isoformat() if at is not None else None})
    return out


def reset_password(s, username: str, password: str | None = None) -> dict:
    """A temporary password (generated unless given; the policy applies) that the user must change at the
    next login; all its sessions end. {"username", "temporary_password", "sessions_ended"}. NotFound,
    ValidationFailed (policy), PermissionDenied (a service user)."""
    from ..services import passwords

    temporary, ended = passwords.reset(s, username, password)
    return {"username": username, "temporary_password": temporary, "sessions_ended": ended}


def logout_user(s, username: str) -> dict:
    """End every session and API token of the user (recorded in the ERP's audit log)."""
    from ..services import sessions

    return {"username": username, "sessions_ended": sessions.logout_user(s, username)}


def mfa_reset(s, username: str) -> dict:
    """Remove a user's multi-factor login (secret, recovery codes, open login challenges), in the audit
    log: it logs in with the password alone, and is led to enrol again when its role requires MFA.
    {"id", "username", "reset"}: reset is False when it had none. NotFound for no such user."""
    return _mfa.reset(s, username)
