"""Multi-factor login: TOTP enrolment (RFC 6238), one-time recovery codes, and the second step of a
login (a short-lived challenge between the password and the code).

The web pages (web/mfa_pages.py) and the API (api/mfa.py) call these after auth.login(issue=False)
has checked the password; the token is issued (auth.issue_token) only once the code has passed. A
wrong code is a failed login attempt (the same throttling as a wrong password); a TOTP code is
accepted once (the time step of the last one is kept, and moved forward atomically); a recovery code
once (marked used atomically). Every enrolment, recovery-code use, regeneration and reset is an
entry of the audit log (entity 'mfa')."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, inspect, select, update
from sqlalchemy.orm import Session

from ..domain import mfa as rules
from ..errors import Conflict, NotAuthenticated, NotFound, SchemaMismatch, ValidationFailed
from ..models import LoginAttempt, MfaChallenge, RecoveryCode, User, UserMfa
from ..models.base import utcnow
from . import audit, auth, throttle

ISSUER = "ERP"
CHALLENGE_SECONDS = 300  # between the password and the code
# Recovery codes are argon2id hashes like passwords, with lighter costs: a code is ~49 random bits (no
# dictionary to try), and a login may check all ten of a user's codes.
_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _row(s: Session, user_id: int) -> UserMfa | None:
    return s.get(UserMfa, user_id)


def enrolled(s: Session, user_id: int) -> bool:
    row = _row(s, user_id)
    return row is not None and row.confirmed_at is not None


def enrolled_ids(s: Session) -> set[int] | None:
    """The ids of the users whose multi-factor login is set up; None when the schema has no MFA table
    (a database of release 1.0)."""
    if not inspect(s.connection()).has_table(UserMfa.__tablename__):
        return None
    return set(s.scalars(select(UserMfa.user_id).where(UserMfa.confirmed_at.is_not(None))))


def status(s: Session, user_id: int) -> dict:
    row = _row(s, user_id)
    left = s.scalar(select(func.count()).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)))
    return {"enrolled": row is not None and row.confirmed_at is not None,
            "confirmed_at": row.confirmed_at if row else None, "recovery_codes_left": left or 0}


def _event(s: Session, action: str, user: User, event: str, **facts) -> None:
    audit.record(s, action, "mfa", user.id, after={"event": event, "username": user.username, **facts})


# ---- the second step of a login -------------------------------------------------------------------

def after_password(s: Session, user: User, roles: frozenset) -> tuple[str, str] | None:
    """What the login needs after a right password: None (nothing: issue the token), or (purpose,
    challenge) with purpose 'code' (the user is enrolled) or 'enrol' (its role requires MFA, none is
    set up: enrolment first, and nothing else)."""
    if enrolled(s, user.id):
        purpose = "code"
    elif rules.required(roles, user.role, bool(user.service)):
        purpose = "enrol"
    else:
        return None
    s.execute(delete(MfaChallenge).where(MfaChallenge.user_id == user.id,  # the user's spent ones go
                                         (MfaChallenge.used.is_(True)) | (MfaChallenge.expires_at < utcnow())))
    token = secrets.token_urlsafe(32)
    s.add(MfaChallenge(token_hash=_hash(token), user_id=user.id, purpose=purpose,
                       expires_at=utcnow() + dt.timedelta(seconds=CHALLENGE_SECONDS)))
    return purpose, token


def open_challenge(s: Session, token: str | None, purpose: str | None = None) -> tuple[MfaChallenge, User]:
    """The challenge a login holds and its user; NotAuthenticated when unknown, used or expired."""
    ch = s.scalar(select(MfaChallenge).where(MfaChallenge.token_hash == _hash(token or ""))) if token else None
    if ch is None or ch.used or ch.expires_at < utcnow() or (purpose and ch.purpose != purpose):
        raise NotAuthenticated("the login's second step is unknown, used or expired.",
                               fix="Log in again with the username and password.")
    user = s.get(User, ch.user_id)
    if user is None or not user.active:
        raise NotAuthenticated("the user can no longer log in.", fix="Ask an administrator.")
    s.info["actor"] = user.username  # the audit log's actor of what the step does
    return ch, user


def close_challenge(s: Session, ch: MfaChallenge) -> None:
    """Use the challenge (once: two requests racing with it cannot both pass)."""
    done = s.execute(update(MfaChallenge).where(MfaChallenge.id == ch.id, MfaChallenge.used.is_(False))
                     .values(used=True)).rowcount
    if done != 1:
        raise NotAuthenticated("the login's second step was already used.", fix="Log in again.")


def _failed(s: Session, user: User, remote_addr: str, what: str):
    """A wrong code: a failed login attempt (throttled as a wrong password), committed, then refused."""
    s.add(LoginAttempt(username=user.username, remote_addr=remote_addr or "", succeeded=False))
    audit.record(s, "login_failed", "users", user.username, after={"remote_addr": remote_addr, "factor": what})
    s.commit()  # the failure must count even though the request fails
    return NotAuthenticated("the one-time code is wrong, expired or already used.",
                            fix="Enter the current code of the authenticator app (or an unused recovery code).",
                            field="code")


def _accept_totp(s: Session, row: UserMfa, code: str) -> bool:
    totp = pyotp.TOTP(row.secret)
    step = rules.matching_step(code, totp.timecode(dt.datetime.now(dt.timezone.utc)),
                               lambda n: totp.generate_otp(n), row.last_step)
    if step is None:
        return False
    moved = s.execute(update(UserMfa).where(UserMfa.user_id == row.user_id).where(
        (UserMfa.last_step.is_(None)) | (UserMfa.last_step < step)).values(last_step=step)).rowcount
    s.expire(row, ["last_step"])
    return moved == 1  # 0: another request took this step (or a later one) meanwhile


def _accept_recovery(s: Session, user: User, code: str) -> bool:
    for rc in s.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))):
        try:
            _hasher.verify(rc.code_hash, code)
        except (VerificationError, InvalidHashError):
            continue
        used = s.execute(update(RecoveryCode).where(RecoveryCode.id == rc.id, RecoveryCode.used_at.is_(None))
                         .values(used_at=utcnow())).rowcount
        if used != 1:
            return False
        left = s.scalar(select(func.count()).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
        _event(s, "update", user, "recovery_code_used", recovery_codes_left=left)
        return True
    return False


def check_code(s: Session, user: User, code: str, remote_addr: str, *, max_failures: int,
               window_seconds: int) -> str:
    """The login's second factor: a TOTP code or an unused recovery code. 'totp' or 'recovery';
    NotAuthenticated (a failed attempt) otherwise, TooManyRequests once throttled."""
    ticket = auth.admit(s, user.username, remote_addr, max_failures=max_failures, window_seconds=window_seconds)
    row = _row(s, user.id)
    code = rules.normalise(code)
    kind = None
    if row is not None and row.confirmed_at is not None and code:
        if rules.is_totp(code):
            kind = "totp" if _accept_totp(s, row, code) else None
        elif _accept_recovery(s, user, code):
            kind = "recovery"
    if kind is None:
        raise _failed(s, user, remote_addr, "code")
    throttle.refund(s, ticket)
    return kind


# ---- enrolment ---------------------------------------------------------------------------------

def begin_enrolment(s: Session, user: User) -> str:
    """The secret the user's authenticator app is to take (kept, encrypted, until confirmed by a code;
    the same one when the page is shown again). Conflict when MFA is already set up."""
    row = _row(s, user.id)
    if row is not None and row.confirmed_at is not None:
        raise Conflict("multi-factor login is already set up for this user.",
                       fix="Keep using the authenticator app; an operator can reset it (erpctl erp user mfa-reset).")
    if row is None:
        row = UserMfa(user_id=user.id, secret=pyotp.random_base32())
        s.add(row)
        s.flush()
    return row.secret


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def _new_codes(s: Session, user: User) -> list[str]:
    s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = rules.new_recovery_codes()
    s.add_all(RecoveryCode(user_id=user.id, code_hash=_hasher.hash(rules.normalise(c))) for c in codes)
    return codes


def confirm_enrolment(s: Session, user: User, code: str, remote_addr: str, *, max_failures: int,
                      window_seconds: int) -> list[str]:
    """The first code confirms the enrolment: MFA is on, and the ten recovery codes (shown once) are
    returned. A wrong code is a failed attempt."""
    ticket = auth.admit(s, user.username, remote_addr, max_failures=max_failures, window_seconds=window_seconds)
    row = _row(s, user.id)
    if row is None or row.confirmed_at is not None:
        raise ValidationFailed("there is no enrolment waiting for its first code.",
                               fix="Open the multi-factor page and scan the new QR code first.")
    code = rules.normalise(code)
    if not rules.is_totp(code) or not _accept_totp(s, row, code):
        raise _failed(s, user, remote_addr, "enrolment code")
    throttle.refund(s, ticket)
    row.confirmed_at = utcnow()
    codes = _new_codes(s, user)
    _event(s, "create", user, "enrolled", recovery_codes=len(codes))
    return codes


def regenerate_recovery_codes(s: Session, user: User) -> list[str]:
    """Ten new recovery codes; the old ones stop working."""
    if not enrolled(s, user.id):
        raise Conflict("multi-factor login is not set up for this user.", fix="Set it up first.")
    codes = _new_codes(s, user)
    _event(s, "update", user, "recovery_codes_regenerated", recovery_codes=len(codes))
    return codes


def reset(s: Session, username: str) -> dict:
    """An operator's reset: the user's secret, recovery codes and open challenges are gone; the user logs
    in with the password alone (and enrols again when its role requires it)."""
    if not inspect(s.connection()).has_table(UserMfa.__tablename__):
        raise SchemaMismatch("the database has no multi-factor login yet (its schema is older than migration 0008)",
                             fix="Nothing to reset; migrate it ('erpctl erp migrate' or a staged upgrade) first.")
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"there is no user {username!r}.", fix="Check the username ('erpctl erp user add' creates one).")
    # counted, not loaded: an operator's tool resets without the field key (the secret stays unread)
    had = bool(s.scalar(select(func.count()).select_from(UserMfa).where(UserMfa.user_id == user.id)))
    s.execute(delete(MfaChallenge).where(MfaChallenge.user_id == user.id))
    s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    s.execute(delete(UserMfa).where(UserMfa.user_id == user.id))
    _event(s, "delete", user, "reset", had_mfa=had)
    return {"username": user.username, "id": user.id, "reset": had}


def pending_secret(s: Session, user_id: int) -> str | None:
    """The secret of an enrolment waiting for its first code (None when there is none)."""
    row = _row(s, user_id)
    return row.secret if row is not None and row.confirmed_at is None else None
