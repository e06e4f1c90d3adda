"""Capturing a consistent snapshot of the ERP database while it keeps serving writes.

SQLite: the online backup API copies the database in one step under a read transaction (in WAL
mode writers go on meanwhile) into a temporary file in the data directory, switched to a rollback
journal so the copy is one self-contained file; the fingerprint and invariants are then taken on
that copy, opened immutable.

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
from .fingerprint import fingerprint

log = logging.getLogger("controlplane.backup.snapshot")

TMP_PREFIX = ".erpctl-backup-"


# SQLite snapshots at least this big get their fingerprint and invariants computed in another
# process while this one chunks and stores the file (two cores: the two long jobs side by side).
PARALLEL_FACTS_BYTES = 32 << 20


@dataclass
class Snapshot:
    engine: str  # sqlite | postgresql
    format: str  # sqlite3 | pg_dump-custom
    path: Path
    size_bytes: int
    tables: dict | None
    invariants: list[dict] | None
    schema_revision: str | None
    source: str
    capture_seconds: float
    details: dict = field(default_factory=dict)
    pending: object = None  # a Future of (tables, invariants, revision) still being computed

    def wait_facts(self) -> None:
        """The fingerprint, invariants and schema revision, once computed (see PARALLEL_FACTS_BYTES)."""
        if self.pending is not None:
            t0 = time.perf_counter()
            self.tables, self.invariants, self.schema_revision = self.pending.result()
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


def _facts(conn) -> tuple[dict, list[dict], str | None]:
    tables = fingerprint(conn)
    with Session(bind=conn) as s:
        found = [v.as_dict() for v in invariants.check_all(s)]
    return tables, found, _schema_revision(conn)


class _FactsProcess:
    """`python -m controlplane.backup.snapshot PATH` computing sqlite_facts(PATH) beside us."""

    def __init__(self, path: Path):
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "controlplane.backup.snapshot", str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self):
        out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise BackupError(f"computing the snapshot's fingerprint and invariants failed: {err.strip()[-2000:]}",
                              fix="Run 'erpctl erp check' on the database; then run the backup again.")
        d = json.loads(out)
        return d["tables"], d["invariants"], d["schema_revision"]

    def cancel(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def sqlite_facts(path: str) -> tuple[dict, list[dict], str | None]:
    """Fingerprint, invariants and schema revision of an SQLite snapshot file (opened immutable)."""
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return _facts(conn)
    finally:
        engine.dispose()


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
    try:
        try:
            src = sqlite3.connect(str(src_path), timeout=30)
            dst = sqlite3.connect(str(tmp))
            try:
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
        if size >= PARALLEL_FACTS_BYTES:
            snap = Snapshot("sqlite", "sqlite3", tmp, size, None, None, None, target.display_url,
                            round(time.perf_counter() - t0, 3), {**details, "facts": "parallel process"},
                            _FactsProcess(tmp))
            try:
                yield snap
            finally:
                if snap.pending is not None:
                    snap.pending.cancel()
        else:
            tables, found, revision = sqlite_facts(str(tmp))
            yield Snapshot("sqlite", "sqlite3", tmp, size, tables, found, revision, target.display_url,
                           round(time.perf_counter() - t0, 3), details)
    finally:
        for p in (tmp, Path(str(tmp) + "-journal")):
            p.unlink(missing_ok=True)


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
                tables, found, revision = _facts(conn)
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

    _tables, _found, _revision = sqlite_facts(sys.argv[1])
    json.dump({"tables": _tables, "invariants": _found, "schema_revision": _revision}, sys.stdout, default=str)
