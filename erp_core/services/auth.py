"""Passwords (argon2id), bearer tokens, login rate limiting, users."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session, undefer_group

from ..domain.permissions import ROLES
from ..errors import Conflict, NotAuthenticated, PermissionDenied, ValidationFailed
from ..models import ApiToken, LoginAttempt, User
from ..models.base import ADDED_LATER_IN_1_1
from . import audit, passwords, sessions, throttle
from .common import get_or_404, user_named

MIN_PASSWORD = passwords.MIN_LENGTH
hash_password = passwords.hash_password
_token_hash = sessions.token_hash


def _check_password(password: str, username: str = "") -> None:
    passwords.check_policy(password, username)


def add_user(s: Session, username: str, password: str, role: str, full_name: str = "",
             service: bool = False) -> User:
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}", field="role", fix=f"Use one of: {', '.join(ROLES)}.")
    _check_password(password, username)
    if s.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"user {username!r} already exists.", field="username", fix="Choose another username.")
    user = User(username=username, password_hash=hash_password(password), role=role, full_name=full_name)
    if service and service_users_kept(s):
        user.service = True
    s.add(user)
    s.flush()
    return user


def set_password(s: Session, username: str, password: str) -> User:
    """A new password for an existing user, who is active afterwards; the user's bearer tokens are
    revoked (whoever held the old password logs in again)."""
    _check_password(password, username)
    user = user_named(s, username)
    user.password_hash = hash_password(password)
    user.active = True
    s.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
    s.flush()
    return user


def deactivate(s: Session, username: str) -> User:
    """The user can no longer log in, and the tokens it holds stop working; never the last active admin."""
    user = user_named(s, username)
    keep_an_admin(s, user, {"active": False})
    user.active = False
    s.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
    s.flush()
    return user


def service_users_kept(s: Session) -> bool:
    """Whether the schema marks service users (migration 0006; a tool may start on an older schema)."""
    return any(c["name"] == "service" for c in inspect(s.connection()).get_columns("users"))


def mark_service(s: Session, username: str) -> User:
    """A service user: the user of an operator's tool, which change_user() refuses to change (marked once
    the schema has the flag; until then, nothing to mark)."""
    user = user_named(s, username)
    if service_users_kept(s):
        user.service = True
        s.flush()
    return user


def change_user(s: Session, user_id: int, changes: dict) -> User:
    """Change a user's role, active flag or name (the API's PATCH). Refused for a service user, and for
    a change that would leave no active administrator (whoever asks, the administrator itself too): the
    active administrators' rows are locked first, so two administrators demoting each other at the same
    moment cannot both succeed."""
    user = get_or_404(s, User, user_id, "user", options=[undefer_group(ADDED_LATER_IN_1_1)])
    if user.service:
        raise PermissionDenied(f"user {user.username!r} is a service user of the operators' tools; its role, "
                               "state and name are not changed through the API.",
                               fix="Leave it as it is: the operators' tools (erpctl) manage their own users.")
    keep_an_admin(s, user, changes)
    for key, value in changes.items():
        setattr(user, key, value)
    s.flush()
    return user


def keep_an_admin(s: Session, user: User, changes: dict) -> None:
    """Conflict when the change would leave no active administrator; the active administrators' rows
    are locked first, so two administrators demoting each other at the same moment cannot both succeed."""
    leaves_admin = user.role == "admin" and user.active and (
        changes.get("role", "admin") != "admin" or changes.get("active", True) is False)
    if leaves_admin:
        admins = s.scalars(select(User.id).where(User.role == "admin", User.active.is_(True))
                           .order_by(User.id).with_for_update()).all()
        if admins == [user.id]:
            field = "active" if changes.get("active", True) is False else "role"
            raise Conflict(f"user {user.username!r} is the last active administrator; without one nobody "
                           "could manage users any more.", field=field,
                           fix="Make another user an active admin first, then change this one.")


def admit(s: Session, username: str, remote_addr: str, *, max_failures: int, window_seconds: int) -> throttle.Ticket:
    """Charge one login attempt (a password or a one-time code) before it is checked: services.throttle,
    429 with Retry-After once the account and address have failed too often."""
    return throttle.admit(s, username, remote_addr, free=max_failures, cap=window_seconds)


def login(s: Session, username: str, password: str, remote_addr: str, *, ttl_seconds: int,
          max_failures: int, window_seconds: int, user_agent: str = "",
          issue: bool = True) -> tuple[str | None, User, dt.datetime | None]:
    """Check the password, throttled per address and per account; an unknown or inactive user costs the
    same argon2 work as a wrong password. issue=False: the password only, no token yet (a second factor
    comes first: services/mfa.py, then issue_token). A right password refunds its own charge only; the
    failures before it are cleared once the login completes (issue_token)."""
    ticket = admit(s, username, remote_addr, max_failures=max_failures, window_seconds=window_seconds)
    user = s.scalar(select(User).where(User.username == username))
    ok = passwords.verify(user.password_hash if user is not None and user.active else None, password)
    s.info["actor"] = username
    if not ok:
        s.add(LoginAttempt(username=username, remote_addr=remote_addr or "", succeeded=False))
        audit.record(s, "login_failed", "users", username, after={"remote_addr": remote_addr})
        s.commit()  # the failed attempt is kept even though the request fails
        raise NotAuthenticated("username or password is wrong.", fix="Check both and try again.")
    throttle.refund(s, ticket)
    if not issue:
        return None, user, None
    token, expires = issue_token(s, user, remote_addr, ttl_seconds=ttl_seconds, user_agent=user_agent)
    return token, user, expires


def issue_token(s: Session, user: User, remote_addr: str, *, ttl_seconds: int, user_agent: str = "",
                audit_after: dict | None = None) -> tuple[str, dt.datetime]:
    """A session for a user who has logged in (after a second factor too): the account-and-address
    throttle counter cleared, the successful attempt and the 'login' audit entry recorded."""
    throttle.forgive(s, throttle.keys(user.username, remote_addr))
    s.add(LoginAttempt(username=user.username, remote_addr=remote_addr or "", succeeded=True))
    token, expires = sessions.open_session(s, user, ttl_seconds, remote_addr, user_agent)
    audit.record(s, "login", "users", user.id, after={"remote_addr": remote_addr, **(audit_after or {})})
    return token, expires


def resolve_token(s: Session, token: str) -> User | None:
    return sessions.resolve(s, token)


def logout(s: Session, token: str) -> None:
    s.execute(update(ApiToken).where(ApiToken.token_hash == _token_hash(token)).values(revoked=True))
    audit.record(s, "logout", "users", s.info.get("actor", ""))
