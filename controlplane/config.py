"""Where the control plane keeps things: the data directory, the database URL, the field key.

The data directory (--data-dir, env ERPCTL_DATA_DIR, default ./erpctl-data) holds the embedded
SQLite database, the field-encryption key (field.key, mode 0600) and, after `erpctl up --demo`, the
demo login (demo-login.json, mode 0600). The database is SQLite in the data directory unless a
URL is given (--database-url, env ERPCTL_DATABASE_URL; PostgreSQL in production). ERP_FIELD_KEY,
when set, is the field key and no key file is used.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from erp_core.ops import default_sqlite_url, normalise_url

from . import layout
from .errors import DataDirProblem
from .fsutil import create_exclusive
from .permissions import check_private

log = logging.getLogger("controlplane.config")

DEFAULT_DATA_DIR = "erpctl-data"
KEY_FILE = layout.name("field_key")
DEMO_LOGIN_FILE = layout.name("demo_login")


# A SQLite URL whose path SQLAlchemy would neither unquote nor quote again (the data directory's
# database, as a rule): read as text. Any other URL is read by SQLAlchemy, imported only then: it
# costs ~150 ms of start-up (python -X importtime), and most commands never open their database.
_PLAIN_SQLITE = re.compile(r"sqlite:///([A-Za-z0-9_.~ +/-]*)")


def _parsed(url: str):
    from sqlalchemy.engine import make_url

    return make_url(url)


@dataclass(frozen=True)
class Target:
    """The ERP installation a command acts on."""

    data_dir: Path
    database_url: str

    @property
    def backend(self) -> str:
        return self.database_url.partition(":")[0].partition("+")[0]

    @property
    def sqlite_path(self) -> Path | None:
        if plain := _PLAIN_SQLITE.fullmatch(self.database_url):
            return Path(plain[1]) if plain[1] else None
        u = _parsed(self.database_url)
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            return Path(u.database)
        return None

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, fit for output and logs."""
        if _PLAIN_SQLITE.fullmatch(self.database_url):
            return self.database_url
        return _parsed(self.database_url).render_as_string(hide_password=True)


def default_url(directory: Path) -> str:
    """The embedded SQLite database of a data directory."""
    return default_sqlite_url(directory)


def resolve(data_dir: str | os.PathLike | None = None, database_url: str | None = None) -> Target:
    """The target from the options, else the environment, else the defaults."""
    directory = Path(data_dir or os.environ.get("ERPCTL_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
    url = database_url or os.environ.get("ERPCTL_DATABASE_URL") or default_sqlite_url(directory)
    return Target(directory, normalise_url(url))


def ensure_data_dir(target: Target) -> Path:
    """Create the data directory (mode 0700: it holds keys and, by default, the database)."""
    d = target.data_dir
    if d.exists() and not d.is_dir():
        raise DataDirProblem(f"the data directory {d} exists but is not a directory",
                             fix="Pass another --data-dir, or move that file away.")
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirProblem(f"cannot create the data directory {d}: {exc.strerror}",
                             fix="Pass a writable --data-dir (or set ERPCTL_DATA_DIR).") from None
    return d


def write_private(path: Path, text: str) -> bool:
    """Create `path` with mode 0600 holding `text`, atomically and only if it does not exist yet
    (write a temporary file, fsync, hard-link it into place). False if it already existed."""
    return create_exclusive(path, text.encode())


def read_private(path: Path) -> str:
    """Read a secret file; refused (DataDirProblem, naming the chmod) when others may read it too."""
    check_private(path)
    return path.read_text().strip()


def field_key(target: Target, create: bool = True) -> str:
    """ERP_FIELD_KEY if set, else the data directory's key file (created on first use)."""
    env = os.environ.get("ERP_FIELD_KEY")
    if env:
        return env
    path = target.data_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise DataDirProblem(f"no field-encryption key in {target.data_dir}",
                                 fix="Run 'erpctl up' once to create it, or set ERP_FIELD_KEY; a lost key is "
                                     "recovered from its escrow copy ('erpctl field-key recover').")
        ensure_data_dir(target)
        if write_private(path, base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n"):
            log.info("created the field-encryption key", extra={"path": str(path)})
            from .escrow import at_install  # escrow imports the installation, which imports this module

            at_install(target, read_private(path))
    key = read_private(path)
    if not key:
        raise DataDirProblem(f"the key file {path} is empty",
                             fix="Restore it from a backup (encrypted partner fields need the same key).")
    return key


def demo_login(target: Target) -> tuple[dict, bool]:
    """The demo login kept in the data directory, created with a random password on first use.
    Returns (login, created)."""
    path = target.data_dir / DEMO_LOGIN_FILE
    created = False
    if not path.exists():
        ensure_data_dir(target)
        login = {"username": "admin", "password": secrets.token_urlsafe(12)}
        created = write_private(path, json.dumps(login) + "\n")
    try:
        login = json.loads(read_private(path))
        return {"username": str(login["username"]), "password": str(login["password"])}, created
    except (ValueError, KeyError, TypeError):
        raise DataDirProblem(f"{path} is not a demo login file",
                             fix="Delete it; the next 'erpctl up --demo' creates a new one.") from None
