"""Sessions: every login (web page or API) is a hashed, expiring bearer token, with when it was created
and last seen, the client address and the user agent. A user lists and ends their own; "log out
everywhere" ends them all; a password change or reset ends the others. Every end is in the audit log.

Last seen is updated at most once a minute, and on SQLite only by a request that writes anyway (a
page that only reads must not take the database's one write lock).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, undefer_group

from ..errors import NotFound
from ..models import ApiToken, User
from ..models.base import ADDED_LATER_IN_1_1, utcnow
from . import audit

SEEN_EVERY = dt.timedelta(seconds=60)
USER_AGENT_MAX = 200


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(s: Session, user: User, ttl_seconds: int, remote_addr: str = "",
                 user_agent: str = "") -> tuple[str, dt.datetime]:
    """A new token for the user: (the token, when it expires). Only its hash is stored."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl_seconds)
    s.add(ApiToken(token_hash=token_hash(token), user_id=user.id, expires_at=expires, created_at=now,
                   last_seen_at=now, remote_addr=(remote_addr or "")[:64],
                   user_agent=(user_agent or "")[:USER_AGENT_MAX]))
    return token, expires


def _writes(s: Session) -> bool:
    bind = s.get_bind()
    return bind.dialect.name != "sqlite" or bool(s.connection().get_execution_options().get("erp_write"))


def resolve(s: Session, token: str) -> User | None:
    """The active user holding this unexpired, unrevoked token (None otherwise); notes it as seen."""
    # only the columns of release 1.0: while an upgrade is rolled back this release still serves on a
    # schema whose later migrations are undone
    row = s.execute(select(User, ApiToken.id, ApiToken.expires_at).join(ApiToken, ApiToken.user_id == User.id)
                    .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked.is_(False))).first()
    if row is None:
        return None
    user, token_id, expires = row
    now = utcnow()
    if expires < now or not user.active:
        return None
    if _writes(s):
        try:
            with s.begin_nested():
                s.execute(update(ApiToken).where(ApiToken.id == token_id, (ApiToken.last_seen_at.is_(None)) |
                                                 (ApiToken.last_seen_at < now - SEEN_EVERY)).values(last_seen_at=now))
        except DBAPIError:  # no last_seen_at (migration 0009 undone): nothing to note
            pass
    return user


def current_id(s: Session, token: str) -> int | None:
    return s.scalar(select(ApiToken.id).where(ApiToken.token_hash == token_hash(token)))


def list_for(s: Session, user_id: int, current_token: str | None = None) -> list[dict]:
    """The user's open sessions, newest first: id, created, last seen, address, user agent, current."""
    current = token_hash(current_token) if current_token else None
    rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked.is_(False),
                                            ApiToken.expires_at > utcnow())
                     .options(undefer_group(ADDED_LATER_IN_1_1)).order_by(ApiToken.id.desc())).all()
    return [{"id": t.id, "created_at": t.created_at, "last_seen_at": t.last_seen_at or t.created_at,
             "expires_at": t.expires_at, "remote_addr": t.remote_addr or "", "user_agent": t.user_agent or "",
             "current": t.token_hash == current} for t in rows]


def end_one(s: Session, user_id: int, session_id: int) -> None:
    """End one of the user's own sessions (NotFound for anyone else's: their ids are not disclosed)."""
    done = s.execute(update(ApiToken).where(ApiToken.id == session_id, ApiToken.user_id == user_id,
                                            ApiToken.revoked.is_(False)).values(revoked=True)).rowcount
    if not done:
        raise NotFound(f"you have no open session {session_id}.", fix="Pick one from your list of sessions.")
    audit.record(s, "logout", "users", user_id, after={"event": "session_ended", "session": session_id})


def end_all(s: Session, user_id: int, keep_token: str | None = None, reason: str = "logout_everywhere") -> int:
    """End every session of the user (but keep_token's); recorded in the audit log. Returns how many ended."""
    stmt = update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked.is_(False))
    if keep_token:
        stmt = stmt.where(ApiToken.token_hash != token_hash(keep_token))
    ended = s.execute(stmt.values(revoked=True)).rowcount
    audit.record(s, "logout", "users", user_id, after={"event": reason, "sessions_ended": ended})
    return ended


def logout_user(s: Session, username: str) -> int:
    """An operator's "log out everywhere" for a user (NotFound for no such user)."""
    user_id = s.scalar(select(User.id).where(User.username == username))
    if user_id is None:
        raise NotFound(f"there is no user {username!r}.", fix="Check the username ('erpctl erp user list').")
    return end_all(s, user_id)
