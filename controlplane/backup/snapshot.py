"""Capturing a consistent snapshot of the ERP database while it keeps serving writes, and the facts
the manifest records about it (what L3 later compares the restored copy with).

SQLite, in place (a database in WAL mode, read by sealing processes): a read transaction is opened
on the live database when its WAL is fully checkpointed, so that it reads the file alone (no page
of its snapshot is in the WAL), and held while the file's pages are read. As long as it is held,
SQLite copies nothing from the WAL into the file: a checkpoint must not overwrite a page that a
reader still sees (wal.c: backfilling needs the exclusive read lock 0, which a reader of the file
alone holds shared, and never goes past the mark of a reader using the WAL). Writers go on
appending to the WAL meanwhile. Whether the snapshot is the file alone is asked of SQLite, not
assumed: after the transaction started, a passive checkpoint from another connection reports the
WAL's frames and how many are in the file; equal, the file holds exactly the snapshot and cannot
change until the transaction ends. If writers keep that from happening (a few tries), or the
database is not in WAL mode, the copy below is taken instead. Nothing in this process opens the
file itself meanwhile (closing a descriptor of our own would drop the locks SQLite holds on it).

SQLite, copied: the online backup API copies the database in one step under a read transaction
(in WAL mode writers go on meanwhile) into a temporary file in the data directory, switched to a
rollback journal so the copy is one self-contained file.

Either way the facts are taken beside the chunking: a thread lists the pages each table owns and
counts its rows (SQLite's dbstat and count(*), in C, without the GIL; in place, on the connection
holding the snapshot) and reads the schema revision; the repository turns the page lists into
checksums with the chunk ids it computes anyway (fingerprint.SQLITE_PAGES).

PostgreSQL: a REPEATABLE READ, READ ONLY transaction exports its snapshot (pg_export_snapshot());
the fingerprint (fingerprint.ROWS, in the server) and the schema revision are computed in that
transaction and pg_dump -Fc --snapshot=<it> dumps exactly the same state, so the manifest and the
dump agree. The dump is uncompressed (-Z0): the repository compresses each chunk, and an
uncompressed dump deduplicates across backups.

erp_core.invariants are not run at capture unless asked (check_invariants): the L3 verification
runs them on the restored copy, which is that same data, before any restore may swap it in (and
the monitoring's invariants job runs them on the live database). Asked for, they run in the
PostgreSQL transaction, or for a large SQLite database in a process of their own (started before
the copy, so its imports overlap it) while this one chunks.
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
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from erp_core.errors import SchemaMismatch
from erp_core.ops import sqlite_file_revision

from ..config import Target
from ..errors import BackupError, DatabaseUnavailable, DiskFull
from .. import layout
from . import fingerprint as fp
from .chunker import sqlite_page_size

log = logging.getLogger("controlplane.backup.snapshot")

TMP_PREFIX = layout.basename("snapshot_tmp").split("<")[0]


# With check_invariants, SQLite databases at least this big get them (and the other facts) computed
# in another process while this one chunks and stores the file (two cores: the two long jobs side
# by side). That process is started before the snapshot is taken, so its imports overlap the copy.
PARALLEL_FACTS_BYTES = 32 << 20


@dataclass
class Snapshot:
    engine: str  # sqlite | postgresql
    format: str  # sqlite3 | pg_dump-custom
    path: Path
    size_bytes: int
    tables: dict | None  # the fingerprint, taken with fingerprint_method (SQLite: see layout)
    invariants: list[dict] | None  # violations found at capture; None: not checked
    schema_revision: str | None
    source: str
    capture_seconds: float
    details: dict = field(default_factory=dict)
    pending: object = None  # a _FactsThread or _FactsProcess still computing (layout, invariants, revision)
    fingerprint_method: str = fp.ROWS
    # SQLite: (page size, fingerprint.sqlite_layout's tables); the repository turns it into `tables`
    # with the page digests (the chunk ids it computes anyway), see fingerprint.checksums
    layout: tuple[int, dict] | None = None
    hold: _InPlace | None = None  # SQLite read in place: the read transaction keeping the file as it was

    def release(self) -> None:
        """Its file is no longer read: an in-place snapshot lets checkpoints go on (facts computed first)."""
        self.wait_facts()
        if self.hold is not None:
            self.hold.close()
            self.hold = None

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


# SQLAlchemy, the ERP's models and its invariants are loaded only where they are used (a PostgreSQL
# database, or invariants asked for): an SQLite backup without them saves their ~300 ms of start-up.

def _invariants_and_revision(conn) -> tuple[list[dict], str | None]:
    from erp_core.ops import check_invariants, current_revision

    return check_invariants(conn).violations, current_revision(conn)


def _pg_facts(conn, check_invariants: bool) -> tuple[dict, list[dict] | None, str | None]:
    """Fingerprint (fingerprint.ROWS, in the server), invariants (when asked) and schema revision, in
    the transaction whose snapshot pg_dump dumps."""
    from erp_core.ops import current_revision

    tables = fp.fingerprint(conn, fp.ROWS)
    if check_invariants:
        return (tables, *_invariants_and_revision(conn))
    return tables, None, current_revision(conn)


def sqlite_facts(path: str, check_invariants: bool = False, db: sqlite3.Connection | None = None
                 ) -> tuple[tuple[int, dict], list[dict] | None, str | None]:
    """(page size, layout) for the fingerprint (fingerprint.sqlite_layout), invariants (None unless
    asked) and schema revision of an SQLite snapshot file (self-contained, private: nothing writes it)."""
    own = db is None
    db = db or sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        layout, revision = fp.sqlite_layout(db), sqlite_file_revision(db)
    finally:
        if own:
            db.close()
    if not check_invariants:
        return layout, None, revision
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found, _ = _invariants_and_revision(conn)
    finally:
        engine.dispose()
    return layout, found, revision


class _FactsThread:
    """sqlite_facts(path) without the invariants, in a thread: SQLite walks the b-trees in C with the
    GIL released, beside the chunking. On the snapshot file, or on the connection holding an in-place
    snapshot (db: left open)."""

    def __init__(self, path: Path, db: sqlite3.Connection | None = None):
        self.own = db is None
        self.db = db or sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self.out = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(str(path),), name="snapshot-facts", daemon=True)
        self.thread.start()

    def _run(self, path: str) -> None:
        try:
            self.out = sqlite_facts(path, db=self.db)
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self.error = exc
        finally:
            if self.own:
                self.db.close()

    def result(self):
        self.thread.join()
        if self.error is not None:
            raise BackupError(f"reading the snapshot's layout failed: {self.error}",
                              fix="Run 'erpctl erp check' on the database; then run the backup again.")
        return self.out

    def cancel(self):
        with contextlib.suppress(sqlite3.Error):
            self.db.interrupt()
        self.thread.join()


class _FactsProcess:
    """`python -m controlplane.backup.snapshot` computing sqlite_facts(path, check_invariants=True)
    beside us: started early (its imports overlap the copy), it reads the snapshot's path on its
    standard input."""

    def __init__(self):
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


class _InPlace:
    """A read transaction on a live SQLite database in WAL mode whose snapshot is the database file
    alone, held until close() (see the module's doc); None from take() when SQLite cannot confirm it."""

    TRIES = 5

    def __init__(self, db: sqlite3.Connection, page_size: int, page_count: int, tries: int):
        self.db, self.page_size, self.page_count, self.tries = db, page_size, page_count, tries

    @classmethod
    def take(cls, path: Path, min_page: int) -> _InPlace | None:
        db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        try:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal" or page_size < min_page:
                db.close()
                return None
            for attempt in range(1, cls.TRIES + 1):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # fold the WAL in, waiting for nobody
                db.execute("BEGIN")
                db.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # the snapshot is taken here
                if cls._file_is_snapshot(path):
                    return cls(db, page_size, db.execute("PRAGMA page_count").fetchone()[0], attempt)
                db.execute("COMMIT")
                time.sleep(0.01 * attempt)
        except sqlite3.Error:
            pass  # the copy is taken instead, and reports what is wrong
        db.close()
        return None

    @staticmethod
    def _file_is_snapshot(path: Path) -> bool:
        """Asked after the read transaction started: are all the WAL's frames in the file (a passive
        checkpoint from another connection moves what it may, then reports (busy, frames, in file))?"""
        probe = sqlite3.connect(str(path), timeout=0, isolation_level=None)
        try:
            _busy, frames, in_file = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return False
        finally:
            probe.close()
        return frames >= 0 and frames == in_file

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("COMMIT")
        self.db.close()


@contextlib.contextmanager
def capture(target: Target, check_invariants: bool = False, *, in_place_min_page: int | None = None,
            before_copy=None):
    """Yields a Snapshot whose file is removed afterwards; with check_invariants, its invariants are
    checked too (otherwise Snapshot.invariants is None: not checked). in_place_min_page: an SQLite
    database in WAL mode with pages at least this big may be read in place (the caller's chunks are
    one page, and it never opens the file in this process: see the module's doc); before_copy() is
    called when a copy is taken instead."""
    clean_stale_temporaries(target.data_dir)
    if target.backend == "sqlite":
        cm = _capture_sqlite(target, check_invariants, None if check_invariants else in_place_min_page,
                             before_copy)
    elif target.backend == "postgresql":
        cm = _capture_postgresql(target, check_invariants)
    else:
        raise BackupError(f"cannot back up a {target.backend} database", fix="Use SQLite or PostgreSQL.")
    with cm as snap:
        yield snap


@contextlib.contextmanager
def _capture_sqlite(target: Target, check_invariants: bool, in_place_min_page: int | None, before_copy):
    src_path = target.sqlite_path
    if src_path is None or not src_path.exists():
        raise SchemaMismatch(f"there is no ERP database at {src_path}",
                             fix="Create it with 'erpctl erp migrate' (or 'erpctl up') on the same --data-dir.")
    t0 = time.perf_counter()
    hold = _InPlace.take(src_path, in_place_min_page) if in_place_min_page is not None else None
    if hold is not None:
        snap = Snapshot("sqlite", "sqlite3", src_path, hold.page_size * hold.page_count, None, None, None,
                        target.display_url, round(time.perf_counter() - t0, 3),
                        {"page_size": hold.page_size, "facts": "parallel thread",
                         "capture": f"in place (read transaction on the checkpointed file, try {hold.tries})"},
                        _FactsThread(src_path, hold.db), fp.SQLITE_PAGES, hold=hold)
        try:
            yield snap
        finally:
            if snap.pending is not None:
                snap.pending.cancel()
                snap.pending = None
            snap.release()
        return
    if before_copy is not None:
        before_copy()
    target.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(target.data_dir, ".sqlite3")
    big = sqlite_bytes(src_path) >= PARALLEL_FACTS_BYTES
    facts = _FactsProcess() if check_invariants and big else None
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

        size = tmp.stat().st_size
        details = {"page_size": sqlite_page_size(tmp)}
        if facts is not None or not check_invariants:
            pending, how = (facts.start(tmp), "parallel process") if facts is not None else \
                (_FactsThread(tmp), "parallel thread")
            facts = None
            snap = Snapshot("sqlite", "sqlite3", tmp, size, None, None, None, target.display_url,
                            round(time.perf_counter() - t0, 3), {**details, "facts": how, "capture": "copy"},
                            pending, fp.SQLITE_PAGES)
            try:
                yield snap
            finally:
                if snap.pending is not None:
                    snap.pending.cancel()
        else:
            layout, found, revision = sqlite_facts(str(tmp), check_invariants=True)
            yield Snapshot("sqlite", "sqlite3", tmp, size, None, found, revision, target.display_url,
                           round(time.perf_counter() - t0, 3), details, fingerprint_method=fp.SQLITE_PAGES,
                           layout=layout)
    finally:
        if facts is not None:
            facts.cancel()
        for p in (tmp, Path(str(tmp) + "-journal")):
            p.unlink(missing_ok=True)


def sqlite_bytes(path: Path) -> int:
    """The database's size, its -wal included (what the snapshot will about be)."""
    total = 0
    for p in (path, Path(str(path) + "-wal")):
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return total


def _pg_env_and_args(url: str) -> tuple[dict, list[str]]:
    from sqlalchemy.engine import make_url

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
def _capture_postgresql(target: Target, check_invariants: bool):
    pg_dump = shutil.which("pg_dump")
    if not pg_dump:
        raise BackupError("pg_dump is not installed", fix="Install the PostgreSQL client (Debian: postgresql-client).")
    target.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(target.data_dir, ".pgdump")
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

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
                tables, found, revision = _pg_facts(conn, check_invariants)
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
    # this module's imports (SQLAlchemy, erp_core) are done by now: they overlapped the copy
    _path = sys.stdin.readline().strip()
    if not _path:
        sys.exit("no snapshot path on standard input")
    (_page_size, _layout), _found, _revision = sqlite_facts(_path, check_invariants=True)
    json.dump({"page_size": _page_size, "layout": _layout, "invariants": _found, "schema_revision": _revision},
              sys.stdout, default=str)
