"""The ops console's own accounts (not the ERP's): a name, a role and an argon2id password hash.

Roles: `operator` reads every page and may start a backup, a verification, an upgrade step or a
drill; `auditor` reads every page and starts nothing. Accounts are made with
`erpctl console user add NAME --role operator|auditor` and kept in the data directory's
console-users.json (mode 0600; layout key console_users). The key that signs the console's session
cookies is console-session.key beside it (made on first use, mode 0600).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .. import layout
from ..errors import ConsoleUserExists, ConsoleUserNotFound, ConsoleUserRefused, DataDirProblem
from ..fsutil import atomic_write_text, create_exclusive, locked

ROLES = ("operator", "auditor")
LANGS = ("en", "zh_Hans")
VERSION = 1
MIN_PASSWORD = 12
MAX_PASSWORD = 256
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a console password, only equal work for unknown names")


def _path(data_dir) -> Path:
    return layout.path(data_dir, "console_users")


def load(data_dir) -> dict[str, dict]:
    """Every account by name ({} when none was made)."""
    p = _path(data_dir)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataDirProblem(f"{p} cannot be read: {exc}",
                             fix="Restore it from a backup of the data directory, or remove it and add the "
                                 "console's accounts again with 'erpctl console user add'.", path=str(p)) from None
    users = data.get("users") if isinstance(data, dict) else None
    return users if isinstance(users, dict) else {}


def _save(data_dir, users: dict) -> None:
    p = _path(data_dir)
    atomic_write_text(p, json.dumps({"version": VERSION, "users": users}, indent=2, sort_keys=True) + "\n")
    os.chmod(p, 0o600)


def check_password(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ConsoleUserRefused(f"the password is shorter than {MIN_PASSWORD} characters",
                                 fix=f"Choose a password of at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise ConsoleUserRefused(f"the password is longer than {MAX_PASSWORD} characters",
                                 fix=f"Choose at most {MAX_PASSWORD} characters.")
    if password.strip().casefold() == name.casefold():
        raise ConsoleUserRefused("the password is the account's name", fix="Choose a password that is not the name.")


def add(data_dir, name: str, role: str, password: str) -> dict:
    """Make an account; ConsoleUserRefused / ConsoleUserExists say why not."""
    if role not in ROLES:
        raise ConsoleUserRefused(f"unknown role {role!r}", fix=f"Use one of: {', '.join(ROLES)}.")
    if not NAME_RE.fullmatch(name or ""):
        raise ConsoleUserRefused(f"{name!r} is not a valid account name",
                                 fix="Use 1-64 letters, digits, '.', '_' or '-'.")
    check_password(name, password)
    Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(layout.path(data_dir, "console_users_lock")):
        users = load(data_dir)
        if name in users:
            raise ConsoleUserExists(f"console account {name!r} already exists",
                                    fix="Choose another name, or remove it first ('erpctl console user remove').")
        users[name] = {"role": role, "password_hash": _hasher.hash(password), "lang": None,
                       "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        _save(data_dir, users)
    return {"name": name, "role": role}


def remove(data_dir, name: str) -> dict:
    with locked(layout.path(data_dir, "console_users_lock")):
        users = load(data_dir)
        if name not in users:
            raise ConsoleUserNotFound(f"no console account {name!r}", fix="'erpctl console user list' shows them.")
        role = users.pop(name)["role"]
        _save(data_dir, users)
    return {"name": name, "role": role, "removed": True}


def listing(data_dir) -> list[dict]:
    return [{"name": n, "role": u.get("role"), "lang": u.get("lang"), "created_at": u.get("created_at")}
            for n, u in sorted(load(data_dir).items())]


def authenticate(data_dir, name: str, password: str) -> dict | None:
    """The account when the password is its own, else None (an unknown name costs the same work)."""
    user = load(data_dir).get(name or "")
    stored = user.get("password_hash") if isinstance(user, dict) else None
    try:
        _hasher.verify(stored or _DUMMY, password or "")
    except (VerificationError, InvalidHashError):
        return None
    if not stored or user.get("role") not in ROLES:
        return None
    return {"name": name, **user}


def set_lang(data_dir, name: str, lang: str | None) -> None:
    """Remember an account's language (None: as the browser asks)."""
    with locked(layout.path(data_dir, "console_users_lock")):
        users = load(data_dir)
        if name in users:
            users[name]["lang"] = lang if lang in LANGS else None
            _save(data_dir, users)


def session_secret(data_dir) -> str:
    """The key that signs session cookies, made on first use (mode 0600)."""
    p = layout.path(data_dir, "console_secret")
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        create_exclusive(p, secrets.token_urlsafe(48).encode())
    return p.read_text().strip()
