"""Passwords (argon2id), bearer tokens, login rate limiting, users."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..domain.permissions import ROLES
from ..errors import Conflict, NotAuthenticated, NotFound, TooManyRequests, ValidationFailed
from ..models import ApiToken, LoginAttempt, User
from ..models.base import utcnow
from . import audit

_hasher = PasswordHasher()
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"password is shorter than {MIN_PASSWORD} characters", field="password",
                               fix=f"Choose a password of at least {MIN_PASSWORD} characters.")


def add_user(s: Session, username: str, password: str, role: str, full_name: str = "") -> User:
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}", field="role", fix=f"Use one of: {', '.join(ROLES)}.")
    _check_password(password)
    if s.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"user {username!r} already exists.", field="username", fix="Choose another username.")
    user = User(username=username, password_hash=hash_password(password), role=role, full_name=full_name)
    s.add(user)
    s.flush()
    return user


def _existing_user(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"there is no user {username!r}.", fix="Check the username, or create the user first.")
    return user


def set_password(s: Session, username: str, password: str) -> User:
    """A new password for an existing user, who is active afterwards; the user's bearer tokens are
    revoked (whoever held the old password logs in again)."""
    _check_password(password)
    user = _existing_user(s, username)
    user.password_hash = hash_password(password)
    user.active = True
    s.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
    s.flush()
    return user


def deactivate(s: Session, username: str) -> User:
    """The user can no longer log in, and the tokens it holds stop working."""
    user = _existing_user(s, username)
    user.active = False
    s.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
    s.flush()
    return user


def _recent_failures(s: Session, username: str, window_seconds: int) -> tuple[int, dt.datetime | None]:
    since = utcnow() - dt.timedelta(seconds=window_seconds)
    last_ok = s.scalar(select(func.max(LoginAttempt.at)).where(
        LoginAttempt.username == username, LoginAttempt.succeeded.is_(True), LoginAttempt.at >= since))
    stmt = select(func.count(), func.min(LoginAttempt.at)).where(
        LoginAttempt.username == username, LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since)
    if last_ok is not None:
        stmt = stmt.where(LoginAttempt.at > last_ok)
    count, first = s.execute(stmt).one()
    return count, first


def login(s: Session, username: str, password: str, remote_addr: str, *, ttl_seconds: int,
          max_failures: int, window_seconds: int) -> tuple[str, User, dt.datetime]:
    """Check the password; after max_failures failures in the window, refuse with 429."""
    failures, first = _recent_failures(s, username, window_seconds)
    if failures >= max_failures:
        first = first if first.tzinfo else first.replace(tzinfo=dt.timezone.utc)
        retry = max(1, int((first + dt.timedelta(seconds=window_seconds) - utcnow()).total_seconds()))
        raise TooManyRequests(f"too many failed logins for {username!r}.",
                              fix=f"Wait {retry} seconds, or ask an administrator to reset the password.",
                              headers={"Retry-After": str(retry)})
    user = s.scalar(select(User).where(User.username == username))
    ok = False
    if user is not None and user.active:
        try:
            ok = _hasher.verify(user.password_hash, password)
        except (VerifyMismatchError, InvalidHashError):
            ok = False
    s.add(LoginAttempt(username=username, remote_addr=remote_addr or "", succeeded=ok))
    s.info["actor"] = username
    if not ok:
        audit.record(s, "login_failed", "users", username, after={"remote_addr": remote_addr})
        s.commit()  # the failed attempt must count even though the request fails
        raise NotAuthenticated("username or password is wrong.", fix="Check both and try again.")
    token = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(seconds=ttl_seconds)
    s.add(ApiToken(token_hash=_token_hash(token), user_id=user.id, expires_at=expires))
    audit.record(s, "login", "users", user.id, after={"remote_addr": remote_addr})
    return token, user, expires


def resolve_token(s: Session, token: str) -> User | None:
    row = s.execute(select(User, ApiToken.expires_at).join(ApiToken, ApiToken.user_id == User.id).where(
        ApiToken.token_hash == _token_hash(token), ApiToken.revoked.is_(False))).first()
    if row is None:
        return None
    user, expires = row
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.timezone.utc)
    if expires < utcnow() or not user.active:
        return None
    return user


def logout(s: Session, token: str) -> None:
    s.execute(update(ApiToken).where(ApiToken.token_hash == _token_hash(token)).values(revoked=True))
    audit.record(s, "logout", "users", s.info.get("actor", ""))
