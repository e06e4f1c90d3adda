"""Passwords: the policy, checking one (the same argon2 work whether the user exists or not), a
change by the user, and an administrator's reset that forces a change at the next login.

Policy (one place): at least MIN_LENGTH characters, not the username, not one of the common
passwords shipped in erp_core/data/common-passwords.txt.gz (20,000 common passwords, as shipped by
Django, BSD-3-Clause; see erp_core/data/README.md). Compared case-insensitively.
"""

from __future__ import annotations

import functools
import gzip
import secrets
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, object_session

from ..errors import PermissionDenied, ValidationFailed
from ..models import User
from . import sessions, throttle
from .common import user_named

MIN_LENGTH = 12
MAX_LENGTH = 256
TEMPORARY_LENGTH = 20

_hasher = PasswordHasher()


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    data = resources.files("erp_core").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


def policy_problem(password: str, username: str) -> tuple[str, str] | None:
    """(problem, fix) of the first rule the password breaks, None when it keeps them all."""
    if len(password) < MIN_LENGTH:
        return (f"the password is shorter than {MIN_LENGTH} characters",
                f"Choose a password of at least {MIN_LENGTH} characters; a few unrelated words are easy to remember.")
    if len(password) > MAX_LENGTH:
        return (f"the password is longer than {MAX_LENGTH} characters", f"Choose at most {MAX_LENGTH} characters.")
    if password.strip().casefold() == (username or "").strip().casefold():
        return "the password is the username", "Choose a password that is not your username."
    if password.strip().lower() in common_passwords():
        return ("the password is on the list of common passwords that attackers try first",
                "Choose a password of your own, not a well-known one.")
    return None


def check_policy(password: str, username: str) -> None:
    """ValidationFailed (422, field "password") naming the rule the password breaks."""
    problem = policy_problem(password, username)
    if problem:
        raise ValidationFailed(problem[0], field="password", fix=problem[1], rule=_rule(problem[0]))


def _rule(problem: str) -> str:
    for word, rule in (("shorter", "min_length"), ("longer", "max_length"), ("username", "not_username"),
                       ("common", "not_common")):
        if word in problem:
            return rule
    return "policy"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(24))


def verify(password_hash: str | None, password: str) -> bool:
    """Whether the password matches; with no hash (no such user, or inactive) the same argon2 work is done
    against a dummy hash, so the time taken does not tell whether the user exists."""
    try:
        ok = _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


def must_change(user) -> bool:
    """Whether the user must change the password first. Read in a savepoint: while an upgrade is rolled
    back, this release still serves on a schema whose migration 0009 is already undone (no column: False)."""
    if "must_change_password" not in inspect(user).unloaded:
        return bool(user.must_change_password)
    s = object_session(user)
    try:
        with s.begin_nested():
            return bool(s.scalar(select(User.must_change_password).where(User.id == user.id)))
    except DBAPIError:
        return False


def change(s: Session, user_id: int, current: str, new: str, keep_token: str | None = None,
           remote_addr: str = "") -> int:
    """The user's own change: the current password is required (its guesses throttled like logins, so a
    borrowed session cannot try passwords at speed); the new one must keep the policy and differ from it.
    Ends the user's other sessions and tokens (all but keep_token); returns how many."""
    user = s.get(User, user_id)
    ticket = throttle.admit(s, user.username, f"{remote_addr}#change", free=throttle.CHANGE_FREE,
                            cap=throttle.CHANGE_CAP)
    ok = verify(user.password_hash, current)
    if ok:
        throttle.refund(s, ticket)
        throttle.forgive(s, ticket)
    if not ok:
        raise ValidationFailed("the current password is wrong", field="current_password",
                               fix="Type the password you logged in with.")
    check_policy(new, user.username)
    if new == current:
        raise ValidationFailed("the new password is the same as the current one", field="password",
                               fix="Choose a new password.")
    user.password_hash = hash_password(new)
    user.must_change_password = False
    ended = sessions.end_all(s, user.id, keep_token=keep_token, reason="password_changed")
    s.flush()
    return ended


def reset(s: Session, username: str, new: str | None = None) -> tuple[str, int]:
    """An administrator's (or operator's) reset: a temporary password (generated when not given) that the
    user must change at the next login; all the user's sessions and tokens end. Refused for a service user
    (its tool keeps its own password). Returns (the temporary password, sessions ended)."""
    user = user_named(s, username)
    if getattr(user, "service", False):
        raise PermissionDenied(f"user {username!r} is a service user of the operators' tools; a forced change "
                               "would stop its tool.", fix="Leave it: its tool rotates its own password.")
    password = new if new is not None else secrets.token_urlsafe(TEMPORARY_LENGTH)[:TEMPORARY_LENGTH]
    if new is not None:
        check_policy(new, username)
    user.password_hash = hash_password(password)
    user.must_change_password = True
    ended = sessions.end_all(s, user.id, reason="password_reset")
    s.flush()
    return password, ended
