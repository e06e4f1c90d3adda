"""The verification ladder: proof, level by level, that a backup restores into a working ERP.

    L1 chunks   every chunk the backup needs is read back, authenticated and hashed
                (Repository.check_chunks); a bad chunk is named with every backup that needs it.
    L2 engine   the backup is materialised into a scratch location and the engine's own checks pass:
                SQLite `PRAGMA integrity_check` and `PRAGMA foreign_key_check`; PostgreSQL
                `pg_restore` into a freshly created scratch database, without a single error.
    L3 content  per-table row counts and checksums of the restored copy equal the manifest's, the
                schema revision is the manifest's, and erp_core.invariants finds nothing.
    L4 service  an ERP started on the restored copy answers /readyz with 200 and serves a sample of
                sales orders, invoices and the trial balance through its API exactly as the copy
                holds them (read as a temporary verification user added to the scratch copy only).

`verify_backup(..., level=N)` runs 1..N and stops at the first failure; every level run is
recorded with its duration in results.json ('backup.verify.L<n>') and, as one record per backup,
in the evidence log (kind 'backup.verify'). The scratch copy (a file, or a scratch database) is
always removed, unless a restore asked to keep it (see Ladder and controlplane/backup/restore.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import random
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import make_url

from erp_core import ops
from erp_core.errors import ErpError
from erp_core.ops import normalise_url

from .. import config, http, results
from ..errors import (BackupNotFound, DiskFull, RepositoryLocked, RepositoryNotInitialised, StoreUnreachable,
                      WrongKey)
from ..evidence import EvidenceLog
from .. import layout
from . import fingerprint as fp
from .scratch import RestoredCopy, pg_create_database, pg_restore, pg_url_for

log = logging.getLogger("controlplane.backup.verify")

LEVELS = {1: "chunks", 2: "engine", 3: "content", 4: "service"}
MAX_LEVEL = 4
SAMPLE = 5  # documents of each kind read through the API at L4
READY_TIMEOUT = 30.0

# progress(stage, done, total): a stage name ("L1 chunks", "L2 materialise", ...) and, when known,
# how far it is. The CLI turns it into a progress bar on a terminal.
Progress = Callable[..., None]


def _noop(*_a, **_kw) -> None:
    pass


# ---- results ----------------------------------------------------------------------------------

@dataclass
class LevelResult:
    level: int
    name: str
    ok: bool
    duration_seconds: float
    summary: str
    problems: list[dict] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"level": self.level, "name": self.name, "ok": self.ok,
                "duration_seconds": round(self.duration_seconds, 3), "summary": self.summary,
                "problems": self.problems, "facts": self.facts}


@dataclass
class Verification:
    """The ladder's outcome for one backup."""

    backup: str
    requested_level: int
    engine: str
    levels: list[LevelResult]
    duration_seconds: float
    recorded: bool = False

    @property
    def ok(self) -> bool:
        return len(self.levels) == self.requested_level and all(l.ok for l in self.levels)

    @property
    def failed(self) -> LevelResult | None:
        return next((l for l in self.levels if not l.ok), None)

    @property
    def passed_level(self) -> int:
        """The highest level passed (0 when L1 failed)."""
        n = 0
        for l in self.levels:
            if not l.ok:
                break
            n = l.level
        return n

    def as_dict(self) -> dict:
        failed = self.failed
        return {"backup": self.backup, "ok": self.ok, "requested_level": self.requested_level,
                "passed_level": self.passed_level, "engine": self.engine,
                "failed_level": failed.level if failed else None,
                "failure": failed.summary if failed else None,
                "duration_seconds": round(self.duration_seconds, 3),
                "levels": [l.as_dict() for l in self.levels]}


def _manifest_dict(manifest) -> dict:
    """The manifest's fields without its chunk list (reading that list is L1's job)."""
    if hasattr(manifest, "summary"):
        return manifest.summary()
    return manifest.as_dict() if hasattr(manifest, "as_dict") else dict(manifest)


def _engine_of(m: dict) -> str:
    """'sqlite' or 'postgresql', from the manifest's engine (or format)."""
    name = str(m.get("engine") or m.get("format") or "").lower()
    return "postgresql" if name.startswith("postg") or name in ("pg", "pg_dump") else "sqlite"


# ---- the ERP on a restored copy -----------------------------------------------------------------

def _erp_db(url: str):
    return ops.Database(url, **({"pool_size": 2, "max_overflow": 2} if url.startswith("sqlite") else
                            {"pool_size": 2, "max_overflow": 4}))


# ---- the ladder --------------------------------------------------------------------------------

class Ladder:
    """Runs the levels on one backup. The restored copy made at L2 is shared by L3 and L4 and
    dropped by close() unless keep_copy (a restore takes it over)."""

    def __init__(self, repo, backup_id: str, *, workdir: Path, server_url: str | None = None,
                 field_key: str | None = None, progress: Progress | None = None,
                 scratch_database: str | None = None, keep_copy: bool = False):
        self.repo = repo
        self.manifest = _manifest_dict(repo.load_manifest(backup_id))
        self.backup_id = str(self.manifest.get("id") or backup_id)
        self.engine = _engine_of(self.manifest)
        self.workdir = Path(workdir)
        self.server_url = server_url
        self.field_key = field_key
        self.progress = progress or _noop
        self.scratch_database = scratch_database
        self.keep_copy = keep_copy
        self.copy: RestoredCopy | None = None
        self.level = MAX_LEVEL
        self.artifact: Path | None = None  # the file materialized at L1 (see _level1_by_materializing)

    # -- running --
    def run(self, level: int) -> list[LevelResult]:
        level = max(1, min(MAX_LEVEL, int(level)))
        self.level = level
        out: list[LevelResult] = []
        for n in range(1, level + 1):
            self.progress(f"L{n} {LEVELS[n]}", None, None)
            t0 = time.perf_counter()
            try:
                result = getattr(self, f"_level{n}")()
            except Exception as exc:
                if _is_typed_fatal(exc):
                    raise
                if isinstance(exc, ErpError):  # e.g. ChunkCorrupt: an explained failure, not a bug
                    problem = {"what": "error", "error": exc.__class__.__name__, "detail": exc.detail,
                               **{k: v for k, v in exc.extra.items() if isinstance(v, (str, int, list))}}
                    if n == 1 and "chunk" in exc.extra:
                        problem["what"] = "chunk"
                        problem.setdefault("reason", exc.detail)
                        self._complete_backups([problem])
                    result = LevelResult(n, LEVELS[n], False, 0.0, f"L{n} failed: {exc.detail}", [problem])
                    result.duration_seconds = time.perf_counter() - t0
                    out.append(result)
                    break
                log.exception("verification level failed unexpectedly", extra={"backup": self.backup_id,
                                                                                 "level": n})
                result = LevelResult(n, LEVELS[n], False, 0.0, f"L{n} could not run: {exc.__class__.__name__}: {exc}",
                                     [{"what": "error", "detail": f"{exc.__class__.__name__}: {exc}"}])
            result.duration_seconds = time.perf_counter() - t0
            out.append(result)
            log.info("verification level done", extra={"backup": self.backup_id, "level": n, "ok": result.ok,
                                                         "seconds": round(result.duration_seconds, 3)})
            if not result.ok:
                break
        return out

    def close(self) -> None:
        if self.copy is not None and not self.keep_copy:
            self.copy.drop()
            self.copy = None
        elif self.copy is None and self.artifact is not None:  # materialized at L1, never taken up by L2
            self.artifact.unlink(missing_ok=True)
        self.artifact = None

    # -- L1 --
    def _level1(self) -> LevelResult:
        if self.level >= 2:
            passed = self._level1_by_materializing()
            if passed is not None:
                return passed
        res = self.repo.check_chunks(backup_ids=[self.backup_id], progress=_repo_progress(self.progress))
        r = res.as_dict() if hasattr(res, "as_dict") else dict(vars(res))
        problems = [dict(p) for p in (r.get("problems") or [])]
        if problems:
            self._complete_backups(problems)
        facts = {k: r.get(k) for k in ("chunks_checked", "bytes_read", "chunks_marked") if k in r}
        if "duration_seconds" in r:
            facts["check_seconds"] = r["duration_seconds"]
        ok = bool(r.get("ok", not problems)) and not problems
        if ok:
            return LevelResult(1, "chunks", True, 0.0,
                               f"{facts.get('chunks_checked', '?')} chunk(s) read back, authenticated and hashed",
                               facts=facts)
        first = problems[0] if problems else {"reason": "check_chunks reported a failure"}
        summary = (f"{len(problems)} bad chunk(s); first: chunk {first.get('chunk')} in pack {first.get('pack')}: "
                   f"{first.get('reason')}; needed by backup(s) {', '.join(first.get('backups') or []) or '?'}; "
                   "marked: the next 'erpctl backup create' stores them again if the database still holds them")
        for p in problems:
            p.setdefault("what", "chunk")
        return LevelResult(1, "chunks", False, 0.0, summary, problems, facts)

    def _level1_by_materializing(self) -> LevelResult | None:
        """L1 in the same pass as L2's copy: rebuilding the file reads back, authenticates and hashes
        every chunk the backup needs (its chunk list's too), which is what L1 asks, so they are not
        all opened twice. None when the copy fails for another reason than the repository itself (a
        damaged chunk...): the separate check then runs, and names every bad chunk."""
        t0 = time.perf_counter()
        try:
            self.artifact = self._materialize()
        except Exception as exc:
            if _is_typed_fatal(exc):
                raise
            log.info("materializing failed at L1; checking the chunks one by one",
                     extra={"backup": self.backup_id, "error": str(exc)})
            return None
        m = self.repo.load_manifest(self.backup_id)
        chunks = set(m.chunks) | set(m.chunk_list)
        facts = {"chunks_checked": len(chunks), "materialize_seconds": round(time.perf_counter() - t0, 3),
                 "how": "while materializing the copy that L2 checks"}
        return LevelResult(1, "chunks", True, 0.0,
                           f"{len(chunks)} chunk(s) read back, authenticated and hashed (materializing the copy)",
                           facts=facts)

    def _complete_backups(self, problems: list[dict]) -> None:
        """Make each bad chunk name every backup that needs it, not only the one checked: the
        repository's check of one backup only knows that backup's manifest."""
        wanted = {str(p.get("chunk")) for p in problems if p.get("chunk")}
        users: dict[str, set] = {c: set() for c in wanted}
        try:
            manifests = self.repo.list_manifests()
        except Exception:
            log.warning("could not list the backups that reference the bad chunks", exc_info=True)
            return
        for m in manifests:
            mid = str(getattr(m, "id", None) or _manifest_dict(m).get("id"))
            ids = list(getattr(m, "chunk_list", None) or [])
            try:
                ids += list(m.chunks if hasattr(m, "chunks") else _manifest_dict(m).get("chunks") or [])
            except Exception as exc:  # noqa: BLE001 - its chunk list is itself unreadable
                bad = getattr(exc, "extra", {}).get("chunk")
                if bad in users:
                    users[bad].add(mid)
            for c in ids:
                if c in users:
                    users[c].add(mid)
        for p in problems:
            named = set(p.get("backups") or []) | users.get(str(p.get("chunk")), set())
            p["backups"] = sorted(named)

    # -- L2 --
    def _materialize(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        artifact = self.repo.materialize(self.backup_id, self.workdir, progress=_repo_progress(self.progress))
        return Path(artifact.path)

    def _level2(self) -> LevelResult:
        t0 = time.perf_counter()
        try:
            path = self.artifact or self._materialize()  # materialized at L1 already, normally
        except Exception as exc:
            if _is_typed_fatal(exc):
                raise
            return LevelResult(2, "engine", False, 0.0, f"the backup could not be materialised: {exc}",
                               [{"what": "materialize", "detail": f"{exc.__class__.__name__}: {exc}"}])
        facts = {"materialize_seconds": round(time.perf_counter() - t0, 3) if self.artifact is None else 0.0,
                 "materialized_at_l1": self.artifact is not None, "artifact_bytes": path.stat().st_size}
        if self.engine == "sqlite":
            self.copy = RestoredCopy("sqlite", path, f"sqlite:///{path}")
            problems = sqlite_engine_checks(path, self.progress)
            facts["checks"] = ["PRAGMA integrity_check", "PRAGMA foreign_key_check"]
        else:
            problems = self._pg_restore(path, facts)
        if problems:
            first = problems[0]
            return LevelResult(2, "engine", False, 0.0,
                               f"{len(problems)} engine check failure(s); first: [{first.get('check')}] "
                               f"{first.get('detail')}", problems, facts)
        what = ("integrity_check ok, no foreign key violations" if self.engine == "sqlite"
                else f"pg_restore into scratch database {self.copy.scratch_database} without errors")
        return LevelResult(2, "engine", True, 0.0, what, facts=facts)

    def _pg_restore(self, dump: Path, facts: dict) -> list[dict]:
        if not self.server_url or make_url(normalise_url(self.server_url)).get_backend_name() != "postgresql":
            return [{"what": "engine", "check": "pg_restore",
                     "detail": "no PostgreSQL server to restore into: pass --scratch-database-url "
                               "(or ERPCTL_SCRATCH_DATABASE_URL), or run against a PostgreSQL --database-url"}]
        name = self.scratch_database or f"erp_verify_{_slug(self.backup_id)}_{secrets.token_hex(3)}"
        pg_create_database(self.server_url, name)
        self.copy = RestoredCopy("postgresql", dump, pg_url_for(self.server_url, name), name, self.server_url)
        self.progress("L2 pg_restore", None, None)
        t0 = time.perf_counter()
        errors = pg_restore(self.server_url, name, dump)
        facts["pg_restore_seconds"] = round(time.perf_counter() - t0, 3)
        facts["scratch_database"] = name
        facts["checks"] = ["pg_restore --exit-on-error into a fresh database"]
        return [{"what": "engine", "check": "pg_restore", "detail": e} for e in errors[:50]]

    # -- L3 --
    def _level3(self) -> LevelResult:
        assert self.copy is not None, "L3 needs the copy restored at L2"
        problems: list[dict] = []
        facts: dict = {}
        db = _erp_db(self.copy.database_url)
        try:
            self.progress("L3 fingerprint", None, None)
            t0 = time.perf_counter()
            method = self.manifest.get("fingerprint_method") or fp.ROWS
            facts["fingerprint_method"] = method
            try:
                actual = self._fingerprint(db, method)
            except fp.UnknownMethod as exc:
                problems.append({"what": "manifest", "detail": str(exc)})
                actual = {}
            facts["fingerprint_seconds"] = round(time.perf_counter() - t0, 3)
            facts["tables"] = len(actual)
            facts["rows"] = sum(t["rows"] for t in actual.values())
            expected = self.manifest.get("tables") or {}
            if problems:
                expected = {}
            elif not expected:
                problems.append({"what": "manifest", "detail": "the manifest holds no table fingerprint to compare"})
            for diff in fp.compare(expected, actual):
                table = diff.split(":", 1)[0].removeprefix("table ").strip()
                problems.append({"what": "table", "table": table, "detail": diff})
            revision = ops.current_revision(db.engine)
            facts["schema_revision"] = revision
            want = self.manifest.get("schema_revision")
            if want and revision != want:
                problems.append({"what": "schema", "detail": f"schema revision {revision} restored, "
                                                             f"{want} in the manifest"})
            self.progress("L3 invariants", None, None)
            problems += invariant_problems(db, facts)
        finally:
            db.dispose()
        if problems:
            first = problems[0]
            kinds = sorted({p.get("invariant") for p in problems if p["what"] == "invariant"})
            tables = sorted({p.get("table") for p in problems if p["what"] == "table"})
            parts = []
            if tables:
                parts.append(f"table(s) differ from the manifest: {', '.join(tables)}")
            if kinds:
                parts.append(f"invariant(s) violated: {', '.join(kinds)}")
            if not parts:
                parts.append(first["detail"])
            return LevelResult(3, "content", False, 0.0,
                               f"{'; '.join(parts)} (first: {first['detail']})", problems, facts)
        return LevelResult(3, "content", True, 0.0,
                           f"{facts['tables']} tables ({facts['rows']} rows) match the manifest; invariants clean",
                           facts=facts)

    def _fingerprint(self, db, method: str) -> dict:
        """The restored copy's fingerprint, taken the way the manifest's was. A SQLite copy is read
        in place (it is a self-contained file nothing else writes)."""
        key = self.repo.fingerprint_key  # sqlite-pages-v1 is keyed with the repository's id key
        if self.copy.engine == "sqlite" and method == fp.SQLITE_PAGES:
            return fp.sqlite_file_fingerprint(self.copy.artifact_path, key)
        with db.engine.connect() as conn:
            return fp.fingerprint(conn, method, key)

    # -- L4 --
    def _level4(self) -> LevelResult:
        assert self.copy is not None, "L4 needs the copy restored at L2"
        return serve_and_sample(self.copy.database_url, self.field_key, self.progress)


def invariant_problems(db, facts: dict) -> list[dict]:
    """L3's business checks (erp_core.invariants) on a copy: one problem per violation."""
    with db.session(write=False, actor="erpctl-verify") as s:
        found = ops.check_invariants(s)
    facts["invariants_seconds"] = found.seconds
    facts["invariant_checks"] = found.checks
    return [{"what": "invariant", "invariant": v["check"], "ref": v["ref"], "detail": v["detail"]}
            for v in found.violations]


def _slug(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())[:16] or "backup"


def _is_typed_fatal(exc: Exception) -> bool:
    """Errors about the repository itself (wrong key, store unreachable, not found, disk full,
    locked) end the command with their own exit code rather than fail a level."""
    fatal = (WrongKey, StoreUnreachable, DiskFull, RepositoryLocked, BackupNotFound, RepositoryNotInitialised)
    return isinstance(exc, (*fatal, KeyboardInterrupt))


def _repo_progress(progress: Progress):
    """The repository reports (phase, done, total) with its own phases ("check", "materialize")."""
    if progress is _noop:
        return None

    def cb(phase, done, total):
        with contextlib.suppress(Exception):
            progress(phase, done, total)
    return cb


# ---- L2 on SQLite ------------------------------------------------------------------------------

def sqlite_engine_checks(path: Path, progress: Progress = _noop) -> list[dict]:
    problems: list[dict] = []
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        return [{"what": "engine", "check": "open", "detail": f"cannot open {path.name}: {exc}"}]
    try:
        try:
            # a backup read in place is a WAL-mode file: the private copy is made to stand alone (a
            # rollback journal; only the journal-mode bytes of its header change, no table's pages)
            conn.execute("PRAGMA journal_mode=DELETE")
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(100)")]
        except sqlite3.DatabaseError as exc:
            return [{"what": "engine", "check": "integrity_check", "detail": f"{path.name}: {exc}"}]
        if rows != ["ok"]:
            problems += [{"what": "engine", "check": "integrity_check", "detail": r} for r in rows]
        try:
            for table, rowid, parent, fkid in conn.execute("PRAGMA foreign_key_check"):
                problems.append({"what": "engine", "check": "foreign_key_check", "table": table, "rowid": rowid,
                                 "detail": f"{table} row {rowid}: foreign key {fkid} points at a missing "
                                           f"{parent} row"})
                if len(problems) >= 100:
                    break
        except sqlite3.DatabaseError as exc:
            problems.append({"what": "engine", "check": "foreign_key_check", "detail": str(exc)})
    finally:
        conn.close()
    return problems


# ---- L4: an ERP on the copy -------------------------------------------------------------------

def _http(method: str, url: str, token: str | None = None, body: dict | None = None, timeout: float = 30):
    """L4's requests to the ERP it serves on the copy (controlplane.http; nothing answering is an OSError)."""
    return http.request(method, url, body, token=token, timeout=timeout)


def _dec(v) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def _field_key_for_l4(key: str | None) -> tuple[str, bool]:
    if key:
        return key, False
    return secrets.token_urlsafe(32), True


def serve_and_sample(database_url: str, field_key: str | None, progress: Progress = _noop) -> LevelResult:
    """Start an ERP (waitress on a free port) on the copy and compare what its API serves with what
    the copy holds: a sample of sales orders and invoices, list totals and the trial balance."""
    key, temporary = _field_key_for_l4(field_key)
    with ops.field_key(key):  # the process's own ERP (erpctl up) has its key back afterwards
        return _serve_and_sample(database_url, key, "temporary" if temporary else "the installation's", progress)


def _serve_and_sample(database_url: str, key: str, key_origin: str, progress: Progress) -> LevelResult:
    problems: list[dict] = []
    facts: dict = {"field_key": key_origin}
    username = f"verify-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    db = _erp_db(database_url)
    server = None
    try:
        _prepare_copy(db, username, password, facts)
        held = _read_copy(db)
        server = _start_erp(database_url, key, db)
        base = server.url
        facts["url"] = base
        progress("L4 readyz", None, None)
        if not _wait_ready(base, facts, problems):
            return _l4(problems, facts)
        token = _login(base, username, password, problems)
        if token is None:
            return _l4(problems, facts)
        progress("L4 documents", 0, len(held.so_sample) + len(held.inv_sample) + 1)
        _compare_lists(base, token, held, problems)
        _compare_orders(base, token, held, problems)
        _compare_invoices(base, token, held, problems)
        _compare_trial_balance(base, token, held, problems)
        facts["sampled"] = {"sales_orders": len(held.so_sample), "invoices": len(held.inv_sample),
                            "trial_balance": 1}
        return _l4(problems, facts)
    finally:
        if server is not None:
            server.stop(timeout=5)
        db.dispose()


@dataclass
class _Held:
    """What the copy holds, read before the ERP serves it: the sampled documents and the totals."""

    so_sample: list[int]
    inv_sample: list[int]
    orders: dict[int, dict]
    invoices: dict[int, dict]
    trial_balance: tuple[Decimal, Decimal]  # debit, credit
    counts: dict[str, int]  # list endpoint -> rows


def _prepare_copy(db, username: str, password: str, facts: dict) -> None:
    """The temporary user and a switched-off maintenance flag exist in this scratch copy only."""
    with db.session(actor="erpctl-verify") as s:
        ops.create_user(s, username, password, "auditor", full_name="backup verification (temporary)")
        if ops.maintenance_state(s)["enabled"]:
            ops.set_maintenance(s, False, "")
            facts["maintenance_was_on"] = True


def _read_copy(db) -> _Held:
    with db.session(write=False) as s:
        ids = ops.document_ids(s)
        so_ids, inv_ids = ids["sales-orders"], ids["invoices"]
        rng = random.Random(len(so_ids) * 7919 + len(inv_ids))
        so_sample = _sample(so_ids, rng)
        inv_sample = _sample(inv_ids, rng)
        counts = {"sales-orders": len(so_ids), "invoices": len(inv_ids)}
        return _Held(so_sample, inv_sample, ops.sales_order_facts(s, so_sample), ops.invoice_facts(s, inv_sample),
                     ops.journal_totals(s), counts)


def _start_erp(database_url: str, key: str, db):
    """The ERP on the copy, served by waitress on a free port of 127.0.0.1."""
    app = ops.create_app(ops.Settings(database_url, field_key=key), db)
    return ops.Server(app, host="127.0.0.1", port=0, threads=4).start()


def _wait_ready(base: str, facts: dict, problems: list[dict]) -> bool:
    """Whether /readyz answers 200 within READY_TIMEOUT (else a problem)."""
    t0, status, body = time.monotonic(), None, None
    while time.monotonic() - t0 < READY_TIMEOUT:
        try:
            status, body = _http("GET", base + "/readyz", timeout=5)
        except OSError as exc:
            status, body = None, str(exc)
        if status == 200:
            break
        time.sleep(0.2)
    facts["readyz_seconds"] = round(time.monotonic() - t0, 3)
    if status != 200:
        problems.append({"what": "readyz", "path": "/readyz",
                         "detail": f"/readyz answered {status}: {json.dumps(body, default=str)[:500]}"})
        return False
    return True


def _login(base: str, username: str, password: str, problems: list[dict]) -> str | None:
    status, body = _http("POST", base + "/api/v1/auth/login", body={"username": username, "password": password})
    if status != 200:
        problems.append({"what": "api", "path": "/api/v1/auth/login", "detail": f"login answered {status}"})
        return None
    return body["token"]


def _compare_lists(base: str, token: str, held: _Held, problems: list[dict]) -> None:
    for kind, n in held.counts.items():
        st, page = _http("GET", f"{base}/api/v1/{kind}?limit=1", token)
        if st != 200 or page.get("total") != n:
            problems.append({"what": "api", "path": f"/api/v1/{kind}",
                             "detail": f"list of {kind} answered {st} with total "
                                       f"{page.get('total') if isinstance(page, dict) else page!r}, "
                                       f"the copy holds {n}"})


def _field_diffs(served: dict, want: dict, exact: tuple[str, ...], money: tuple[str, ...]) -> list[str]:
    """What a served document says differently from the copy: `exact` fields compared as they are,
    `money` fields as decimals."""
    diffs = [f"{k} {served.get(k)!r} != {want[k]!r}" for k in exact if served.get(k) != want[k]]
    return diffs + [f"{k} {served.get(k)} != {want[k]}" for k in money if _dec(served.get(k)) != _dec(want[k])]


def _compare_documents(base: str, token: str, kind: str, label: str, stored: dict[int, dict], ids: list[int],
                       diffs_of, problems: list[dict]) -> None:
    """GET each sampled document of `kind` and name every difference from what the copy holds."""
    for doc_id in ids:
        path = f"/api/v1/{kind}/{doc_id}"
        st, served = _http("GET", base + path, token)
        want = stored.get(doc_id)
        if st != 200:
            problems.append({"what": "api", "path": path, "detail": f"{path} answered {st}"})
            continue
        diffs = diffs_of(served, want)
        if diffs:
            problems.append({"what": "api", "path": path, "document": want["number"],
                             "detail": f"{label} {want['number']}: " + "; ".join(diffs)})


def _order_diffs(o: dict, want: dict) -> list[str]:
    diffs = _field_diffs(o, want, ("number", "state"), ("net_total", "tax_total", "gross_total"))
    got_lines = [(l["id"], _dec(l["net_amount"]), _dec(l["tax_amount"])) for l in o.get("lines", [])]
    if got_lines != [(i, _dec(n), _dec(t)) for i, n, t in want["lines"]]:
        diffs.append(f"lines differ ({len(got_lines)} served, {len(want['lines'])} stored)")
    return diffs


def _compare_orders(base: str, token: str, held: _Held, problems: list[dict]) -> None:
    _compare_documents(base, token, "sales-orders", "sales order", held.orders, held.so_sample, _order_diffs,
                       problems)


def _compare_invoices(base: str, token: str, held: _Held, problems: list[dict]) -> None:
    def invoice_diffs(i: dict, want: dict) -> list[str]:
        return _field_diffs(i, want, ("number", "kind", "state"), ("gross_total", "amount_paid"))

    _compare_documents(base, token, "invoices", "invoice", held.invoices, held.inv_sample, invoice_diffs, problems)


def _compare_trial_balance(base: str, token: str, held: _Held, problems: list[dict]) -> None:
    path = "/api/v1/reports/trial-balance"
    st, tb = _http("GET", base + path, token)
    if st != 200:
        problems.append({"what": "api", "path": path, "detail": f"{path} answered {st}"})
        return
    totals = tb.get("totals", {})
    got = (_dec(totals.get("debit")), _dec(totals.get("credit")))
    db_tb = held.trial_balance
    if got != db_tb:
        problems.append({"what": "api", "path": path,
                         "detail": f"trial balance totals served {got[0]}/{got[1]}, "
                                   f"journal lines hold {db_tb[0]}/{db_tb[1]}"})
    if got[0] != got[1]:
        problems.append({"what": "api", "path": path,
                         "detail": f"trial balance served does not balance: {got[0]} != {got[1]}"})


def _sample(ids: list[int], rng: random.Random) -> list[int]:
    if len(ids) <= SAMPLE:
        return list(ids)
    picked = {ids[0], ids[-1]}
    while len(picked) < SAMPLE:
        picked.add(rng.choice(ids))
    return sorted(picked)


def _l4(problems: list[dict], facts: dict) -> LevelResult:
    if problems:
        return LevelResult(4, "service", False, 0.0,
                           f"{len(problems)} problem(s) serving the restored copy; first: {problems[0]['detail']}",
                           problems, facts)
    s = facts.get("sampled", {})
    return LevelResult(4, "service", True, 0.0,
                       f"/readyz 200; {s.get('sales_orders', 0)} sales orders, {s.get('invoices', 0)} invoices "
                       "and the trial balance served as stored", facts=facts)


# ---- verifying backups and recording the proof ---------------------------------------------------

def default_field_key(target: config.Target | None) -> str | None:
    """The installation's field key (for reading a copy through the ERP), when there is one."""
    if target is None:
        return os.environ.get("ERP_FIELD_KEY") or None
    try:
        return config.field_key(target, create=False)
    except Exception:  # noqa: BLE001 - no key: a temporary one still serves non-encrypted data
        return None


def scratch_server_url(target: config.Target | None, explicit: str | None = None) -> str | None:
    """The PostgreSQL server that scratch databases are created on."""
    url = explicit or os.environ.get("ERPCTL_SCRATCH_DATABASE_URL")
    if url:
        return normalise_url(url)
    if target is not None and target.backend == "postgresql":
        return target.database_url
    return None


def verify_backup(repo, backup_id: str, level: int = 3, *, target: config.Target | None = None,
                  data_dir: Path | None = None, scratch_dir: Path | None = None,
                  scratch_database_url: str | None = None, progress: Progress | None = None,
                  record: bool = True) -> Verification:
    """Run levels 1..level on one backup, stop at the first failure, record the result."""
    data_dir = Path(data_dir) if data_dir else (target.data_dir if target else None)
    base = Path(scratch_dir) if scratch_dir else (layout.path(data_dir, "scratch") if data_dir else None)
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="verify-", dir=base))
    t0 = time.perf_counter()
    ladder = Ladder(repo, backup_id, workdir=workdir, server_url=scratch_server_url(target, scratch_database_url),
                    field_key=default_field_key(target), progress=progress)
    try:
        levels = ladder.run(level)
    finally:
        ladder.close()
        shutil.rmtree(workdir, ignore_errors=True)
    v = Verification(ladder.backup_id, max(1, min(MAX_LEVEL, int(level))), ladder.engine, levels,
                     time.perf_counter() - t0)
    if record and data_dir is not None:
        record_verification(data_dir, v)
    return v


def record_verification(data_dir: Path, v: Verification, *, kind: str = "backup.verify", extra: dict | None = None) -> None:
    for l in v.levels:
        results.record(data_dir, f"backup.verify.L{l.level}", l.ok, backup=v.backup,
                       duration=round(l.duration_seconds, 3), summary=l.summary)
    data = {"backup": v.backup, "engine": v.engine, "requested_level": v.requested_level,
            "passed_level": v.passed_level, "ok": v.ok, "duration_seconds": round(v.duration_seconds, 3),
            "levels": [{"level": l.level, "name": l.name, "ok": l.ok, "duration_seconds": round(l.duration_seconds, 3),
                        "summary": l.summary, "problems": l.problems[:20],
                        **({"problems_total": len(l.problems)} if len(l.problems) > 20 else {})}
                       for l in v.levels], **(extra or {})}
    EvidenceLog(data_dir).append(kind, data, outcome="ok" if v.ok else "failed")
    v.recorded = True


def select_backups(repo, ids: list[str] | None = None, all_latest: bool = False,
                   source: str | None = None) -> list[str]:
    """The backups to verify: the ids given; with all_latest the newest backup of every source;
    with neither (or the id "latest"), the newest backup of `source` (the database a manifest says
    it was taken from, Target.display_url; None: of any), so that in a repository shared by several
    databases "latest" is this database's own."""
    if ids and "latest" not in ids:
        return [str(_manifest_dict(repo.load_manifest(i)).get("id") or i) for i in ids]
    manifests = _by_age(repo)
    if ids:
        return [_latest_of(manifests, source) if i == "latest" else
                str(_manifest_dict(repo.load_manifest(i)).get("id") or i) for i in ids]
    if not all_latest:
        return [_latest_of(manifests, source)]
    latest: dict[str, dict] = {}
    for m in manifests:
        src = m.get("source")
        key = json.dumps(src, sort_keys=True, default=str) if isinstance(src, (dict, list)) else str(src)
        latest[key] = m
    return [str(m["id"]) for m in sorted(latest.values(), key=lambda m: str(m.get("created_at") or ""))]


def _by_age(repo) -> list[dict]:
    from .. import errors

    manifests = [_manifest_dict(m) for m in repo.list_manifests()]
    if not manifests:
        raise errors.BackupNotFound("the repository holds no backup yet",
                                    fix="Create one with 'erpctl backup create'.")
    return sorted(manifests, key=lambda m: str(m.get("created_at") or ""))


def _latest_of(manifests: list[dict], source: str | None) -> str:
    from .. import errors

    own = [m for m in manifests if source is None or m.get("source") == source]
    if not own:
        raise errors.BackupNotFound(f"the repository holds no backup of this database ({source}), only of "
                                    f"{len({str(m.get('source')) for m in manifests})} other one(s)",
                                    fix="Create one with 'erpctl backup create' on this data directory, or "
                                        "name the backup to verify by its id ('erpctl backup list').")
    return str(own[-1]["id"])


def source_of(repo, backup_id: str) -> str | None:
    """The database a backup was taken from, as its manifest records it."""
    return _manifest_dict(repo.load_manifest(backup_id)).get("source")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
