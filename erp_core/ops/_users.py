"""Service users: the accounts operators' tools log in with (create, rotate a password, deactivate)."""

from __future__ import annotations

from ..domain.permissions import ROLES
from ..services import auth as _auth

__all__ = ["ROLES", "create_user", "set_password", "deactivate_user"]


def _facts(user) -> dict:
    return {"id": user.id, "username": user.username, "role": user.role, "full_name": user.full_name,
            "active": bool(user.active)}


def create_user(s, username: str, password: str, role: str, full_name: str = "") -> dict:
    """A new user of one of ROLES. ValidationFailed for an unknown role or a short password,
    Conflict when the username is taken."""
    return _facts(_auth.add_user(s, username, password, role, full_name=full_name))


def set_password(s, username: str, password: str) -> dict:
    """Rotate the password of an existing user (NotFound otherwise): it is active afterwards and its
    bearer tokens are revoked."""
    return _facts(_auth.set_password(s, username, password))


def deactivate_user(s, username: str) -> dict:
    """The user can no longer log in; its bearer tokens stop working (NotFound for no such user)."""
    return _facts(_auth.deactivate(s, username))
