"""Database URLs as text: the spelling the ERP accepts and the embedded database's URL. Loads no
SQLAlchemy (every erpctl command resolves its database URL; most never open the database)."""

from __future__ import annotations

import os
from pathlib import Path


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def default_sqlite_url(data_dir: str | os.PathLike) -> str:
    """The embedded SQLite database of a data directory."""
    return f"sqlite:///{Path(data_dir).resolve() / 'erp.sqlite3'}"
