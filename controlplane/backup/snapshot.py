"""Capturing a consistent snapshot of the ERP database while it keeps serving writes.

SQLite: the online backup API copies the database in one step under a read transaction (in WAL
mode writers go on meanwhile) into a temporary file in the data directory, switched to a rollback
journal so the copy is one self-contained file; the fingerprint (fingerprint.SQLITE_PAGES: the pages
each table owns, hashed) and the invariants are then taken on that copy, opened read-only.

PostgreSQL: a REPEATABLE READ, READ ONLY transaction exports its snapshot (pg_export_snapshot());
the fingerprint, the invariants and the schema revision are computed in that transaction and
pg_dump -Fc --snapshot=<it> dumps exactly the same state, so the manifest and the dump agree.
The dump is uncompressed (-Z0): the repository compresses each chunk, and an uncompressed dump
deduplicates across backups.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from erp_core import invariants
from erp_core.errors import SchemaMismatch

from ..config import Target
from ..errors import BackupError, DatabaseUnavailable, DiskFull
from . import fingerprint as fp

log = logging.getLogger("controlplane.backup.snapshot")

TMP_PREFIX = ".erpctl-backup-"


# SQLite databases at least this big get the facts of their snapshot (layout for the fingerprint,
# invariants, schema revision) computed in another process while this one chunks and stores the
# file (two cores: the two long jobs side by side). That process is started before the snapshot is
# taken, so its start-up (imports) overlaps the copy.
PARALLEL_FACTS_BYTES = 32 << 20


@dataclass
class Snapshot:
    engine: str  # sqlite | postgresql
    format: str  # sqlite3 | pg_dump-custom
    path: Path
    size_bytes: int
    tables: dict | None  # the fingerprint, taken with fingerprint_method (SQLite: see layout)
    invariants: list[dict] | None
    schema_revision: str | None
    source: str
    capture_seconds: float
    details: dict = field(default_factory=dict)
    pending: object = None  # a _FactsProcess still computing (layout, invariants, revision)
    fingerprint_method: str = fp.ROWS
    # SQLite: (page size, fingerprint.sqlite_layout's tables); the repository turns it into `tables`
    # with the page digests (the chunk ids it computes anyway), see fingerprint.checksums
    layout: tuple[int, dict] | None = None

    def wait_facts(self) -> None:
        """The layout or fingerprint, invariants and schema revision, once computed."""
        if self.pending is not None:
            t0 = time.perf_counter()
            self.layout, self.invariants, self.schema_revision = self.pending.result()
            self.pending = None
            self.details["facts_wait_seconds"] = round(time.perf_counter() - t0, 3)


def _disk_full(where: Path, exc: Exception) -> DiskFull:
    return DiskFull(f"no space left in the data directory {where} for the temporary snapshot ({exc})",
                    fix="Free space in the data directory (the snapshot needs about the database's size); "
                        "nothing was published from this run.")


def _tmp_path(data_dir: Path, suffix: str) -> Path:
    return data_dir / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def clean_stale_temporaries(data_dir: Path) -> list[str]:
    """Remove temporary snapshots of killed runs (their pid, in the name, is no longer running)."""
    import psutil

    removed = []
    try:
        names = [p for p in Path(data_dir).iterdir() if p.name.startswith(TMP_PREFIX)]
    except FileNotFoundError:
        return removed
    for p in names:
        try:
            pid = int(p.name[len(TMP_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not psutil.pid_exists(pid):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def _schema_revision(conn) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None  # not migrated
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _invariants_and_revision(conn) -> tuple[list[dict], str | None]:
    with Session(bind=conn) as s:
        found = [v.as_dict() for v in invariants.check_all(s)]
    return found, _schema_revision(conn)


def _pg_facts(conn) -> tuple[dict, list[dict], str | None]:
    """Fingerprint (fingerprint.ROWS, in the server), invariants and schema revision, in the
    transaction whose snapshot pg_dump dumps."""
    tables = fp.fingerprint(conn, fp.ROWS)
    return (tables, *_invariants_and_revision(conn))


class _FactsProcess:
    """`python -m controlplane.backup.snapshot` computing sqlite_facts(path) beside us: started early
    (its imports overlap the copy), it reads the snapshot's path on its standard input."""

    def __init__(self):
        import sys

        root = str(Path(__file__).resolve().parents[2])  # the same code as ours
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "controlplane.backup.snapshot"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def start(self, path: Path) -> _FactsProcess:
        stdin, self.proc.stdin = self.proc.stdin, None  # communicate() must not touch it again
        try:
            stdin.write(f"{path}\n")
            stdin.close()
        except OSError:  # it died: result() says why
            pass
        return self

    def result(self):
        out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise BackupError(f"computing the snapshot's fingerprint and invariants failed: {err.strip()[-2000:]}",
                              fix="Run 'erpctl erp check' on the database; then run the backup again.")
        d = json.loads(out)
        return (d["page_size"], d["layout"]), d["invariants"], d["schema_revision"]

    def cancel(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def sqlite_facts(path: str) -> tuple[tuple[int, dict], list[dict], str | None]:
    """(page size, layout) for the fingerprint (fingerprint.sqlite_layout), invariants and schema
    revision of an SQLite snapshot file (self-contained, private: nothing writes it)."""
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        layout = fp.sqlite_layout(db)
    finally:
        db.close()
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found, revision = _invariants_and_revision(conn)
    finally:
        engine.dispose()
    return layout, found, revision


@contextlib.contextmanager
def capture(target: Target):
    """Yields a Snapshot whose file is removed afterwards."""
    clean_stale_temporaries(target.data_dir)
    if target.backend == "sqlite":
        cm = _capture_sqlite(target)
    elif target.backend == "postgresql":
        cm = _capture_postgresql(target)
    else:
        raise BackupError(f"cannot back up a {target.backend} database", fix="Use SQLite or PostgreSQL.")
    with cm as snap:
        yield snap


@contextlib.contextmanager
def _capture_sqlite(target: Target):
    src_path = target.sqlite_path
    if src_path is None or not src_path.exists():
        raise SchemaMismatch(f"there is no ERP database at {src_path}",
                             fix="Create it with 'erpctl erp migrate' (or 'erpctl up') on the same --data-dir.")
    target.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(target.data_dir, ".sqlite3")
    t0 = time.perf_counter()
    facts = _FactsProcess() if _sqlite_bytes(src_path) >= PARALLEL_FACTS_BYTES else None
    try:
        try:
            src = sqlite3.connect(str(src_path), timeout=30)
            dst = sqlite3.connect(str(tmp))
            try:
                # a private temporary: no fsync (a crash leaves garbage that the next run removes)
                dst.execute("PRAGMA synchronous=OFF")
                src.backup(dst)  # one step: a consistent copy; WAL writers are not blocked
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
                src.close()
        except sqlite3.OperationalError as exc:
            if "full" in str(exc).lower():
                raise _disk_full(target.data_dir, exc) from None
            raise DatabaseUnavailable(f"cannot read the SQLite database {src_path}: {exc}",
                                      fix="Check the file and its permissions.") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(target.data_dir, exc) from None
            raise
        for extra in (Path(str(tmp) + "-journal"), Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
            extra.unlink(missing_ok=True)
        from .chunker import sqlite_page_size

        size = tmp.stat().st_size
        details = {"page_size": sqlite_page_size(tmp)}
        if facts is not None:
            snap = Snapshot("sqlite", "sqlite3", tmp, size, None, None, None, target.display_url,
                            round(time.perf_counter() - t0, 3), {**details, "facts": "parallel process"},
                            facts.start(tmp), fp.SQLITE_PAGES)
            facts = None
            try:
                yield snap
            finally:
                if snap.pending is not None:
                    snap.pending.cancel()
        else:
            layout, found, revision = sqlite_facts(str(tmp))
            yield Snapshot("sqlite", "sqlite3", tmp, size, None, found, revision, target.display_url,
                           round(time.perf_counter() - t0, 3), details, fingerprint_method=fp.SQLITE_PAGES,
                           layout=layout)
    finally:
        if facts is not None:
            facts.cancel()
        for p in (tmp, Path(str(tmp) + "-journal")):
            p.unlink(missing_ok=True)


def _sqlite_bytes(path: Path) -> int:
    """The database's size, its -wal included (what the snapshot will about be)."""
    total = 0
    for p in (path, Path(str(path) + "-wal")):
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return total


def _pg_env_and_args(url: str) -> tuple[dict, list[str]]:
    u = make_url(url)
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    args = []
    if u.host:
        args += ["--host", u.host]
    if u.port:
        args += ["--port", str(u.port)]
    if u.username:
        args += ["--username", u.username]
    for k, v in (u.query or {}).items():
        if k == "sslmode":
            env["PGSSLMODE"] = str(v)
    args += ["--dbname", u.database or "postgres"]
    return env, args


@contextlib.contextmanager
def _capture_postgresql(target: Target):
    pg_dump = shutil.which("pg_dump")
    if not pg_dump:
        raise BackupError("pg_dump is not installed", fix="Install the PostgreSQL client (Debian: postgresql-client).")
    target.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(target.data_dir, ".pgdump")
    engine = create_engine(target.database_url, poolclass=NullPool)
    t0 = time.perf_counter()
    try:
        try:
            conn = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        except Exception as exc:  # noqa: BLE001 - the driver's error says why
            raise DatabaseUnavailable(f"the database did not answer: {exc}",
                                      fix="Check that PostgreSQL runs and --database-url points at it.") from None
        try:
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                snapshot_id = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                tables, found, revision = _pg_facts(conn)
                env, args = _pg_env_and_args(target.database_url)
                proc = subprocess.run([pg_dump, "--format=custom", "--compress=0", f"--snapshot={snapshot_id}",
                                       "--no-password", f"--file={tmp}", *args],
                                      env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    err = proc.stderr.strip()
                    if "No space left" in err:
                        raise _disk_full(target.data_dir, err)
                    raise BackupError(f"pg_dump failed ({proc.returncode}): {err}",
                                      fix="Read pg_dump's message; pg_dump must be as new as the server.")
        finally:
            conn.close()
        yield Snapshot("postgresql", "pg_dump-custom", tmp, tmp.stat().st_size, tables, found, revision,
                       target.display_url, round(time.perf_counter() - t0, 3),
                       {"pg_dump": subprocess.run([pg_dump, "--version"], capture_output=True,
                                                  text=True).stdout.strip(),
                        "server_version": _server_version(engine)})
    finally:
        engine.dispose()
        tmp.unlink(missing_ok=True)


def _server_version(engine) -> str | None:
    try:
        with engine.connect() as c:
            return c.exec_driver_sql("SHOW server_version").scalar()
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":  # the parallel facts process (see _FactsProcess)
    import sys

    # this module's imports (SQLAlchemy, erp_core) are done by now: they overlapped the copy
    _path = sys.stdin.readline().strip()
    if not _path:
        sys.exit("no snapshot path on standard input")
    (_page_size, _layout), _found, _revision = sqlite_facts(_path)
    json.dump({"page_size": _page_size, "layout": _layout, "invariants": _found, "schema_revision": _revision},
              sys.stdout, default=str)
