"""The scratch copy a backup is restored into, to be checked (verification L2-L4) or to replace
the live database (restore): a SQLite file, or a PostgreSQL scratch database. Scratch databases
are created from template0 and dropped with FORCE; libpq tools get the password through the
environment, never on a command line."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from erp_core.ops import normalise_url


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pg_url_for(server_url: str, database: str) -> str:
    """The SQLAlchemy URL of `database` on the server of `server_url`."""
    return make_url(normalise_url(server_url)).set(database=database).render_as_string(hide_password=False)


def libpq(server_url: str, database: str) -> tuple[str, dict]:
    """A libpq connection URI (without the password) and the environment holding the password,
    so that no secret appears on a command line."""
    u = make_url(normalise_url(server_url))
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    uri = u.set(drivername="postgresql", password=None, database=database).render_as_string(hide_password=False)
    return uri, env


@contextlib.contextmanager
def pg_admin(server_url: str):
    """An AUTOCOMMIT connection to the server's maintenance database (CREATE/DROP/ALTER DATABASE
    cannot run inside a transaction block nor from the database they act on)."""
    engine = create_engine(pg_url_for(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def pg_database_exists(server_url: str, name: str) -> bool:
    with pg_admin(server_url) as c:
        return bool(c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar())


def pg_create_database(server_url: str, name: str) -> None:
    with pg_admin(server_url) as c:
        c.execute(text(f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0"))


def pg_drop_database(server_url: str, name: str) -> None:
    with pg_admin(server_url) as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)"))


def pg_restore(server_url: str, database: str, dump: Path, jobs: int | None = None) -> list[str]:
    """Restore a `pg_dump -Fc` file into an existing empty database; the error lines (empty when
    the restore succeeded with no error at all)."""
    uri, env = libpq(server_url, database)
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    cmd = ["pg_restore", "--exit-on-error", f"--jobs={jobs}", f"--dbname={uri}", str(dump)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError:
        return ["pg_restore is not installed (Debian: apt-get install postgresql-client)"]
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower() or "fatal" in l.lower()]
    if proc.returncode != 0 and not errors:
        errors = lines or [f"pg_restore exited with {proc.returncode}"]
    return errors


@dataclass
class RestoredCopy:
    """A backup materialised and opened for checks: a SQLite file, or a PostgreSQL scratch database
    (the pg_dump file it came from beside it)."""

    engine: str
    artifact_path: Path
    database_url: str
    scratch_database: str | None = None
    server_url: str | None = None

    def drop(self) -> None:
        if self.scratch_database and self.server_url:
            with contextlib.suppress(Exception):
                pg_drop_database(self.server_url, self.scratch_database)
        if self.engine == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(self.artifact_path) + suffix).unlink()


def sqlite_close_cleanly(path: Path) -> None:
    """Fold any -wal into the file and leave it self-contained (no -wal/-shm beside it)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode == "wal":
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
