"""The upgrade: a resumable state machine that moves an ERP from one release to the next.

    preflight  refuse with the reason (disk, backup, invariants, another operation, ERP health,
               long transactions, changed migrations, migration lint); nothing is changed
    backup     a new backup of the database, verified through L3 before anything else happens
    expand     the release's additive migrations, one transaction (the old release keeps serving)
    backfill   the release's backfills in key-range batches under a write-stall budget, each batch
               and its checkpoint one transaction (controlplane/upgrade/backfill.py)
    verify     ERP in maintenance: nothing left to fill, invariants clean, key-range checksums taken
    switch     the new release becomes `current` (erpctl up restarts the ERP on it)
    contract   after --confirm-contract or a soak period: NOT NULLs and drops, one transaction,
               checksums equal before and after. The point of no return.

The state lives in <data dir>/upgrade/state.json (controlplane/upgrade/state.py) and is written
before each stage starts and after it ends; a killed run is continued by `resume` or undone by
`rollback`. Before contract, rollback migrates the schema down to the old release's exact
catalogue and keeps every row written meanwhile; after it, rollback restores the pre-upgrade
backup and lists the writes that loses. Maintenance mode set by the upgrade is cleared on every
exit path the process lives through (and by the next resume or rollback after a kill). Every apply,
resume and rollback appends its record to the evidence log.

Migrations are run by this erpctl's own erp_core, which must be the target release's code: the
preflight checks the version and that every migration file is byte-identical in the installed
releases and here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

import erp_core
from erp_core.errors import ErpError
from erp_core.db import (Database, MIGRATIONS_DIR, alembic_config, current_revision, known_migrations,
                         make_engine, script_directory)

from .. import release as releases
from ..config import Target
from ..errors import (NoUpgrade, PreflightFailed, RollbackNeedsRestore, UpgradeError, UpgradeFailed)
from ..evidence import EvidenceLog
from ..faults import failpoint
from . import catalogue as cat
from . import checks, state as S
from .backfill import DEFAULT_BUDGET_SECONDS, run_backfills

log = logging.getLogger("controlplane.upgrade")

# Expected backfill rates (the targets bench/upgrade.py checks) for the plan's time estimates.
EXPECTED_ROWS_PER_SECOND = {"sqlite": 300_000, "postgresql": 80_000}
LOCK_TIMEOUT = "3s"
DDL_ATTEMPTS = 5
SWITCH_TIMEOUT_SECONDS = 90
UPGRADE_ACTOR = "erpctl-upgrade"  # the audit log's actor for the upgrade's own writes


@dataclass
class UpgradeOptions:
    target: Target
    to_version: str | None = None
    erp_url: str | None = None          # None: the ERP is stopped (an offline upgrade)
    confirm_contract: bool = False
    soak_seconds: float | None = None
    stall_budget_ms: float | None = None
    repo: str | None = None
    key_file: Path | None = None
    lock_wait: float = 0.0
    long_transaction_seconds: float = 60.0
    on_event: Callable[[str, dict], None] | None = None


# ---- what the code ships -------------------------------------------------------------------------

def bundled_checksums() -> dict[str, str]:
    """sha256 of each migration file this erpctl carries, by revision."""
    out = {}
    for script in script_directory().walk_revisions():
        out[script.revision] = hashlib.sha256(Path(script.path).read_bytes()).hexdigest()
    return out


def _pending(from_rev: str | None) -> list[dict]:
    migrations = known_migrations()
    revs = [m["revision"] for m in migrations]
    if from_rev not in revs:
        raise NoUpgrade(f"the database is at revision {from_rev!r}, which this erpctl does not know",
                        fix="Use the erpctl of the release that migrated it.")
    return migrations[revs.index(from_rev) + 1:]


def _groups(pending: list[dict]) -> dict[str, str | None]:
    """The last revision of each stage among the pending migrations (stages must come in order)."""
    order = {"expand": 0, "backfill": 1, "contract": 2}
    last, seen = {"expand": None, "backfill": None, "contract": None}, -1
    for m in pending:
        rank = order.get(m["stage"])
        if rank is None or rank < seen:
            raise UpgradeError(f"migration {m['revision']} ({m['stage']}) is out of stage order",
                               fix="Migrations must be expand, then backfill, then contract ('erpctl upgrade lint').")
        seen = rank
        last[m["stage"]] = m["revision"]
    return last


def _backfills(revisions: list[str]) -> list:
    from erp_core import backfill as erp_backfill

    out = []
    for rev in revisions:
        out.extend(erp_backfill.backfills(rev))
    return out


# ---- small pieces ---------------------------------------------------------------------------------

class _Ctx:
    """One run: the options, the state, an engine."""

    def __init__(self, opts: UpgradeOptions, state: dict):
        self.opts = opts
        self.target = opts.target
        self.state = state
        self.engine: Engine = make_engine(opts.target.database_url, pool_size=2, max_overflow=2)
        self.dialect = self.engine.dialect.name

    def save(self) -> None:
        S.save(self.target.data_dir, self.state)

    def say(self, what: str, **data) -> None:
        log.info(what, extra=data)
        if self.opts.on_event:
            self.opts.on_event(what, data)

    def close(self) -> None:
        self.engine.dispose()


def _maintenance(url: str, enabled: bool | None, reason: str = "") -> dict:
    from erp_core.services import maintenance

    db = Database(url, pool_size=1, max_overflow=1)
    try:
        with db.session(write=enabled is not None, actor=UPGRADE_ACTOR) as s:
            return maintenance.state(s) if enabled is None else maintenance.set_state(s, enabled, reason)
    finally:
        db.dispose()


def _freeze(ctx: _Ctx, why: str) -> None:
    m = ctx.state.setdefault("maintenance", {})
    if not m.get("set"):
        m["prior"] = _maintenance(ctx.target.database_url, None)
        m["set"] = True
        ctx.save()  # before switching: a kill after this is cleaned up by resume or rollback
    _maintenance(ctx.target.database_url, True, f"upgrade {ctx.state['id']}: {why}")


def _thaw(ctx: _Ctx) -> None:
    m = ctx.state.get("maintenance") or {}
    if not m.get("set"):
        return
    prior = m.get("prior") or {"enabled": False, "reason": ""}
    _maintenance(ctx.target.database_url, bool(prior.get("enabled")), prior.get("reason", ""))
    m["set"] = False
    ctx.save()


def _migrate(ctx: _Ctx, revision: str, *, down: bool = False, point: str) -> None:
    """Alembic upgrade (or downgrade) to `revision`, each migration in its own transaction (env.py), so a
    failure or a kill inside one leaves the schema as it was before it. PostgreSQL waits at most
    LOCK_TIMEOUT for a table lock (so writers never queue behind a waiting ALTER for long) and the
    step is retried. The failpoint `point` fires inside each migration's transaction."""
    from alembic import command

    for attempt in range(1, DDL_ATTEMPTS + 1):
        try:
            with ctx.engine.connect() as conn:
                if ctx.dialect == "postgresql":
                    conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
                    conn.commit()
                cfg = alembic_config(ctx.target.database_url)
                cfg.attributes["connection"] = conn
                cfg.attributes["on_applied"] = lambda _rev: failpoint(point)
                (command.downgrade if down else command.upgrade)(cfg, revision)
            return
        except Exception as exc:  # noqa: BLE001 - only lock timeouts are retried
            if "lock timeout" not in str(exc).lower() or attempt == DDL_ATTEMPTS:
                raise
            ctx.say("lock timeout, retrying", step=point, attempt=attempt)
            time.sleep(attempt)


def _revision(ctx: _Ctx) -> str | None:
    return current_revision(ctx.engine)


def _http_json(url: str, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def _wait_serving(ctx: _Ctx, version: str, timeout: float = SWITCH_TIMEOUT_SECONDS) -> None:
    """Wait until the ERP at --erp-url reports `version` (erpctl up restarts it on the current release)."""
    url = ctx.opts.erp_url
    if not url:
        return
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            code, body = _http_json(url.rstrip("/") + "/healthz")
            seen = body.get("version")
            if code == 200 and seen == version:
                return
        except (OSError, ValueError):
            seen = "no answer"
        time.sleep(0.5)
    raise UpgradeError(f"the ERP at {url} did not come back on release {version} within {timeout:.0f} s "
                       f"(it reports {seen!r})",
                       fix="Check that 'erpctl up' runs on this data directory (it follows the current release) "
                           "and look at its log; then 'erpctl upgrade resume' or 'erpctl upgrade rollback'.")


def _evidence(target: Target, kind: str, state: dict, outcome: str, **extra) -> None:
    data = {k: state.get(k) for k in ("id", "from_version", "to_version", "from_revision", "to_revision",
                                      "status", "stage", "completed", "error", "backup")}
    data["stages"] = {k: {kk: v.get(kk) for kk in ("seconds", "detail")} for k, v in state.get("stages", {}).items()}
    data.update(extra)
    EvidenceLog(target.data_dir).append(kind, data, outcome=outcome)


# ---- plan ------------------------------------------------------------------------------------------

def _describe(ctx: _Ctx) -> dict:
    """What an upgrade from the database's revision to the target release would do."""
    target = ctx.target
    cur = releases.current(target)
    to_version = ctx.opts.to_version or erp_core.__version__
    rev = _revision(ctx)
    if rev is None:
        raise NoUpgrade("the database is not migrated yet", fix="Create it with 'erpctl erp migrate'.")
    pending = _pending(rev)
    if not pending:
        raise NoUpgrade(f"the database is already at {rev}, the head of release {erp_core.__version__}",
                        fix="Nothing to do.")
    groups = _groups(pending)
    return {"from_version": cur.version if cur else None, "to_version": to_version, "from_revision": rev,
            "to_revision": pending[-1]["revision"], "expand_revision": groups["expand"],
            "backfill_revision": groups["backfill"], "contract_revision": groups["contract"],
            "migrations": pending}


def _row_estimates(ctx: _Ctx, tables: list[str]) -> dict[str, int]:
    out = {}
    insp = inspect(ctx.engine)
    with ctx.engine.connect() as c:
        for t in sorted(set(tables)):
            if insp.has_table(t):
                out[t] = int(c.execute(text(f'SELECT count(*) FROM "{t}"')).scalar())
    return out


def plan(opts: UpgradeOptions) -> dict:
    """Each stage with its lock level, estimated rows and time, rollback method, and the point of no return."""
    ctx = _Ctx(opts, S.new())
    try:
        d = _describe(ctx)
        bfs = _backfills([m["revision"] for m in d["migrations"] if m["stage"] == "backfill"])
        rows = _row_estimates(ctx, [b.table for b in bfs])
        total = sum(rows.get(b.table, 0) for b in bfs)
        rate = EXPECTED_ROWS_PER_SECOND.get(ctx.dialect, 80_000)
        budget = (opts.stall_budget_ms / 1000) if opts.stall_budget_ms else DEFAULT_BUDGET_SECONDS.get(ctx.dialect, 0.5)
        db_bytes = _database_bytes(ctx)
        pg = ctx.dialect == "postgresql"
        down = f"migrate down to {d['from_revision']} in one transaction and serve release {d['from_version']} again; " \
               "rows written meanwhile are kept in its representation"
        stages = [
            {"stage": "preflight", "lock": "none", "rows": 0, "seconds": 2, "online": True,
             "rollback": "nothing to undo"},
            {"stage": "backup", "lock": "none (online snapshot)", "rows": 0, "seconds": round(db_bytes / 40e6 + 3, 1),
             "online": True, "rollback": "nothing to undo (the backup is kept)"},
            {"stage": "expand", "revision": d["expand_revision"], "online": True, "rows": 0, "seconds": 1,
             "lock": ("ACCESS EXCLUSIVE on each altered table, metadata only, waiting at most "
                      f"{LOCK_TIMEOUT} per attempt" if pg else "the database write lock for one short transaction"),
             "rollback": down},
            {"stage": "backfill", "revision": d["backfill_revision"], "online": True, "rows": total,
             "seconds": round(total / rate, 1),
             "lock": (f"row locks of one batch at a time; writers wait at most ~{budget * 1000:.0f} ms" if pg else
                      f"the write lock for one batch at a time; writers wait at most ~{budget * 1000:.0f} ms"),
             "tables": {b.name: rows.get(b.table, 0) for b in bfs}, "rollback": down},
            {"stage": "verify", "online": False, "rows": total, "seconds": round(2 + total / 1e6, 1),
             "lock": "maintenance mode: the ERP serves reads and refuses writes", "rollback": down},
            {"stage": "switch", "online": False, "rows": 0, "seconds": 5,
             "lock": f"maintenance mode; the ERP restarts on release {d['to_version']}", "rollback": down},
            {"stage": "contract", "revision": d["contract_revision"] or d["to_revision"], "online": False,
             "rows": total, "seconds": round(2 + 2 * total / 1e6, 1), "point_of_no_return": True,
             "lock": ("maintenance mode; VALIDATE scans under SHARE UPDATE EXCLUSIVE, then a brief ACCESS EXCLUSIVE"
                      if pg else "maintenance mode; the write lock for one transaction"),
             "rollback": "restore the pre-upgrade backup: writes made after it are lost (listed by 'erpctl upgrade "
                         "rollback')"},
        ]
        return {**{k: v for k, v in d.items() if k != "migrations"}, "database": ctx.target.display_url,
                "engine": ctx.dialect, "stall_budget_ms": round(budget * 1000),
                "estimated_rows_per_second": rate, "database_bytes": db_bytes,
                "migrations": d["migrations"], "stages": stages, "point_of_no_return": "contract",
                "estimated_seconds": round(sum(s["seconds"] for s in stages), 1)}
    finally:
        ctx.close()


def _database_bytes(ctx: _Ctx) -> int:
    path = ctx.target.sqlite_path
    if path is not None:
        return sum(p.stat().st_size for p in (path, Path(str(path) + "-wal")) if p.exists())
    with ctx.engine.connect() as c:
        return int(c.execute(text("SELECT pg_database_size(current_database())")).scalar())


# ---- preflight -------------------------------------------------------------------------------------

def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix}


def preflight(ctx: _Ctx, *, with_backup_repo: bool = True) -> list[dict]:
    st, out = ctx.state, []
    target = ctx.target

    # another operation
    from ..backup import restore as restore_mod

    rs = restore_mod.read_state(target)
    busy = rs is not None and rs.get("phase") not in restore_mod.FINAL
    out.append(_check("no other operation", not busy,
                      "a restore is in progress" if busy else "no restore in progress (the upgrade lock is held)",
                      "Finish it first: 'erpctl backup restore' resumes or rolls it back."))

    # releases
    cur = releases.current(target)
    to = _installed(target, st.get("to_version"))
    problems = []
    if cur is None:
        problems.append("no current release is set")
    if to is None:
        problems.append(f"release {st.get('to_version')} is not installed")
    if st.get("to_version") != erp_core.__version__:
        problems.append(f"this erpctl carries the migrations of release {erp_core.__version__}, "
                        f"not {st.get('to_version')}")
    out.append(_check("releases", not problems,
                      "; ".join(problems) or f"{cur.version} serves; {to.version} installed and carried by this erpctl",
                      f"Install the releases ('erpctl release install WHEEL'), set the one that serves "
                      f"('erpctl release current VERSION'), and run the erpctl of release {st.get('to_version')}."))

    # migration checksums: every applied migration must be byte-identical in both releases and here
    bundled = bundled_checksums()
    changed = []
    applied = _applied_revisions(ctx)
    for rel in (r for r in (cur, to) if r is not None):
        shipped = {m["revision"]: m.get("sha256") for m in rel.migrations}
        for rev in applied:
            if rev in shipped and shipped[rev] != bundled.get(rev):
                changed.append(f"{rev} differs between release {rel.version} and this erpctl")
    out.append(_check("migration checksums", not changed,
                      "; ".join(changed) or f"{len(applied)} applied migration(s) unchanged in every release",
                      "A migration that already ran was edited; restore its original text in the release, "
                      "and put the change in a new migration."))

    # migration lint
    from .lint import lint_migrations

    findings = [f for f in lint_migrations(MIGRATIONS_DIR / "versions") if f.severity == "error"]
    out.append(_check("migration lint", not findings,
                      "; ".join(f"{Path(f.path).name}:{f.line} {f.rule}: {f.message}" for f in findings[:5])
                      or "no errors", "Fix the migrations ('erpctl upgrade lint' lists the findings)."))

    # ERP health
    if ctx.opts.erp_url:
        url = ctx.opts.erp_url.rstrip("/")
        try:
            code, body = _http_json(url + "/readyz")
            ok = code == 200
            detail = f"{url}/readyz answered {code}" + ("" if ok else f": {json.dumps(body)[:300]}")
        except (OSError, ValueError) as exc:
            ok, detail = False, f"{url}/readyz did not answer: {exc}"
        out.append(_check("ERP healthy", ok, detail,
                          "Make the ERP ready first (see runbooks/), or pass --offline when it is stopped on purpose."))

    # invariants
    found = checks.run_invariants(ctx.engine)
    out.append(_check("invariants", not found,
                      f"{len(found)} violation(s): " + "; ".join(v.get("check", "") + ": " + str(v.get("detail", ""))[:120]
                                                         for v in found[:3]) if found else "clean",
                      "Repair the data first ('erpctl erp check' lists them); an upgrade never starts on broken books."))

    # long-running transactions
    if ctx.dialect == "postgresql":
        with ctx.engine.connect() as c:
            rows = c.execute(text(
                "SELECT pid, coalesce(application_name, ''), extract(epoch FROM now() - xact_start)::int "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND xact_start IS NOT NULL AND state <> 'idle' AND now() - xact_start > make_interval(secs => :s)"),
                {"s": ctx.opts.long_transaction_seconds}).all()
        out.append(_check("no long transactions", not rows,
                          "; ".join(f"pid {p} ({a or 'no name'}) open for {s} s" for p, a, s in rows)
                          or f"none older than {ctx.opts.long_transaction_seconds:g} s",
                          "End them (they would hold the expand step's table locks): "
                          "SELECT pg_terminate_backend(pid) after checking what they are."))

    # disk
    need, free, what = _disk_need(ctx)
    out.append(_check("free disk", free >= need,
                      f"{free / 2**20:.0f} MiB free in {target.data_dir}, {need / 2**20:.0f} MiB needed ({what})",
                      "Free space in the data directory's file system, or point the backup repository elsewhere."))

    # backup repository
    if with_backup_repo:
        try:
            repo = _open_repo(ctx)
            out.append(_check("backup possible", True, f"repository {repo.url} opens"))
        except Exception as exc:  # noqa: BLE001 - the typed error's message is the reason
            out.append(_check("backup possible", False,
                              f"no fresh verified backup can be taken: {getattr(exc, 'detail', exc)}",
                              getattr(exc, "fix", "") or "Initialise the repository ('erpctl backup init') "
                              "and set ERPCTL_BACKUP_PASSPHRASE or --key-file."))
    return out


def _installed(target: Target, version: str | None):
    from ..errors import ReleaseNotFound

    try:
        return releases.get(target, version) if version else None
    except ReleaseNotFound:
        return None


def _applied_revisions(ctx: _Ctx) -> list[str]:
    if not inspect(ctx.engine).has_table("erp_schema_migrations"):
        return []
    with ctx.engine.connect() as c:
        return [r[0] for r in c.execute(text("SELECT revision FROM erp_schema_migrations"))]


def _disk_need(ctx: _Ctx) -> tuple[int, int, str]:
    size = _database_bytes(ctx)
    free = shutil.disk_usage(ctx.target.data_dir).free
    if ctx.target.sqlite_path is not None:
        # the backup's new chunks, a verification copy, and growth of the file and its WAL while migrating
        return int(size * 2.5) + 64 * 2**20, free, "backup + verification copy + migration growth = 2.5 x the database"
    return int(size * 1.2) + 64 * 2**20, free, "backup of the database dump = 1.2 x the database"


def _open_repo(ctx: _Ctx):
    from ..cli.backup_common import open_repo

    return open_repo(ctx.target, ctx.opts.repo, ctx.opts.key_file, ctx.opts.lock_wait)


# ---- stages ----------------------------------------------------------------------------------------

def _stage_preflight(ctx: _Ctx) -> dict:
    results = preflight(ctx, with_backup_repo="backup" not in ctx.state["completed"])
    failed = [r for r in results if not r["ok"]]
    ctx.state["preflight"] = results
    if failed:
        raise PreflightFailed("preflight refused the upgrade: " + "; ".join(f"{r['check']}: {r['detail']}"
                                                                          for r in failed),
                              fix=failed[0]["fix"], checks=results)
    if "catalogue_before" not in ctx.state:
        ctx.state["catalogue_before"] = cat.catalogue(ctx.engine)
    return {"checks": len(results)}


def _stage_backup(ctx: _Ctx) -> dict:
    from ..backup.verify import verify_backup

    repo = _open_repo(ctx)
    manifest = repo.create_backup(ctx.target)
    v = verify_backup(repo, manifest.id, level=3, target=ctx.target)
    if not v.ok:
        failed = v.failed
        raise UpgradeError(f"the pre-upgrade backup {manifest.short_id} failed verification at L{failed.level}: "
                           f"{failed.summary}", fix="Look at 'erpctl backup verify' output; fix the cause and retry.")
    ctx.state["backup"] = {"id": manifest.id, "repository": repo.url, "created_at": manifest.created_at,
                           "verified_level": v.passed_level,
                           "audit_rows": (manifest.tables.get("audit_log") or {}).get("rows")}
    return {"backup": manifest.short_id, "verified_level": v.passed_level}


def _stage_expand(ctx: _Ctx) -> dict:
    st = ctx.state
    if st.get("expand_revision") and _revision(ctx) == st["from_revision"]:
        _migrate(ctx, st["expand_revision"], point="upgrade.migration.expand")
    return {"revision": _revision(ctx)}


def _stage_backfill(ctx: _Ctx) -> dict:
    st = ctx.state
    bfs = _backfills([m["revision"] for m in st["migrations"] if m["stage"] == "backfill"])
    budget = (ctx.opts.stall_budget_ms or st.get("stall_budget_ms") or 0) / 1000 or None

    def on_progress(progress, canary):
        st["backfill"] = {"backfills": [p.as_dict() for p in progress], "canary": canary}
        ctx.save()

    figures = run_backfills(ctx.engine, bfs, budget=budget, on_progress=on_progress)
    st["backfill"] = figures
    if st.get("backfill_revision") and _revision(ctx) == st.get("expand_revision"):
        _migrate(ctx, st["backfill_revision"], point="upgrade.migration.backfill")
    return {"rows": figures["rows"], "rows_per_second": figures["rows_per_second"],
            "canary": figures["canary"]}


def _tables_of(ctx: _Ctx) -> list[str]:
    bfs = _backfills([m["revision"] for m in ctx.state["migrations"] if m["stage"] == "backfill"])
    return sorted({b.table for b in bfs})


def _stage_verify(ctx: _Ctx) -> dict:
    from erp_core import backfill as erp_backfill

    _freeze(ctx, "verifying")
    bfs = _backfills([m["revision"] for m in ctx.state["migrations"] if m["stage"] == "backfill"])
    with ctx.engine.connect() as c:
        left = {b.name: n for b in bfs if (n := erp_backfill.remaining(c, b))}
    if left:
        raise UpgradeError(f"rows left unfilled after the backfill: {left}",
                           fix="A writer of the old release bypassed the compatibility triggers; see the log.")
    found = checks.run_invariants(ctx.engine)
    if found:
        raise UpgradeError(f"invariants fail after the backfill: {found[:3]}", fix="See 'erpctl erp check'.")
    leftovers = cat.leftovers(cat.catalogue(ctx.engine))
    if leftovers:
        raise UpgradeError(f"temporary objects left in the schema: {leftovers}", fix="See the log.")
    specs = checks.table_specs(ctx.engine, _tables_of(ctx))
    snap = checks.snapshot(ctx.engine, specs)
    ctx.state["verified"] = {"rows": {t: v["rows"] for t, v in snap.items()}}
    return {"tables": {t: v["rows"] for t, v in snap.items()}, "invariants": "clean"}


def _stage_switch(ctx: _Ctx) -> dict:
    st = ctx.state
    _freeze(ctx, "switching release")
    releases.set_current(ctx.target, st["to_version"])
    failpoint("upgrade.switch.after_set_current")
    _wait_serving(ctx, st["to_version"])
    return {"current": st["to_version"]}


def _contract_allowed(ctx: _Ctx) -> tuple[bool, str]:
    st, opts = ctx.state, ctx.opts
    if opts.confirm_contract:
        return True, "confirmed"
    soak = opts.soak_seconds if opts.soak_seconds is not None else st.get("soak_seconds")
    switched = (st["stages"].get("switch") or {}).get("finished_epoch")
    if soak is not None and switched is not None:
        wait = switched + soak - time.time()
        if wait > 0:
            ctx.say("soaking before contract", seconds=round(wait))
            _soak(ctx, wait)
        return True, f"soaked {soak:.0f} s"
    return False, "waiting for --confirm-contract or a soak period"


def _soak(ctx: _Ctx, seconds: float) -> None:
    """Watch the ERP on the new release for the soak period; an unready ERP stops the upgrade before contract."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.opts.erp_url:
            try:
                code, body = _http_json(ctx.opts.erp_url.rstrip("/") + "/readyz")
            except (OSError, ValueError) as exc:
                code, body = 0, {"error": str(exc)}
            if code != 200:
                raise UpgradeError(f"the ERP was not ready during the soak period ({code}: {json.dumps(body)[:200]})",
                                   fix="Investigate, then 'erpctl upgrade rollback' (before contract nothing is lost).")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _stage_contract(ctx: _Ctx) -> dict:
    st = ctx.state
    _freeze(ctx, "contracting the schema")
    specs = checks.table_specs(ctx.engine, _tables_of(ctx))
    if _revision(ctx) != st["to_revision"]:
        before = checks.snapshot(ctx.engine, specs)
        _migrate(ctx, st["to_revision"], point="upgrade.migration.contract")
        after = checks.snapshot(ctx.engine, specs)
        problems = checks.compare(before, after)
        if problems:
            raise UpgradeError(f"the contract step changed data: {problems[:5]}",
                               fix="This is a bug in the release's contract migration; roll back with "
                                   "'erpctl upgrade rollback --restore-backup'.")
    found = checks.run_invariants(ctx.engine)
    leftovers = cat.leftovers(cat.catalogue(ctx.engine))
    if found or leftovers:
        raise UpgradeError(f"after contract: invariants {found[:3]}, leftovers {leftovers}",
                           fix="Roll back with 'erpctl upgrade rollback --restore-backup'.")
    _thaw(ctx)
    return {"revision": _revision(ctx)}


STAGE_FUNCS = {"preflight": _stage_preflight, "backup": _stage_backup, "expand": _stage_expand,
               "backfill": _stage_backfill, "verify": _stage_verify, "switch": _stage_switch,
               "contract": _stage_contract}


# ---- driving ---------------------------------------------------------------------------------------

def _run_stages(ctx: _Ctx) -> dict:
    st = ctx.state
    for name in S.STAGES:
        if name in st["completed"]:
            continue
        if name == "contract":
            allowed, why = _contract_allowed(ctx)
            if not allowed:
                _thaw(ctx)
                st["status"], st["stage"] = "awaiting_contract", "contract"
                ctx.save()
                ctx.say("switched; contract waits", reason=why)
                return st
        st["stage"] = name
        rec = st["stages"].setdefault(name, {})
        rec["started_at"], rec["started_epoch"] = S.now_iso(), time.time()
        ctx.save()
        failpoint(f"upgrade.before.{name}")
        ctx.say(f"stage {name}")
        t0 = time.perf_counter()
        rec["detail"] = STAGE_FUNCS[name](ctx)
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        rec["finished_at"], rec["finished_epoch"] = S.now_iso(), time.time()
        st["completed"].append(name)
        ctx.save()
        failpoint(f"upgrade.after.{name}")
    _thaw(ctx)
    st["status"], st["stage"] = "done", "done"
    ctx.save()
    return st


def _drive(ctx: _Ctx, kind: str) -> dict:
    """Run the remaining stages. A failure before expand changed nothing; from expand until contract it
    rolls the schema back by itself; after contract it stops (going back means a restore: the operator's
    call). Ctrl+C leaves the state for resume or rollback."""
    st = ctx.state
    try:
        _run_stages(ctx)
    except BaseException as exc:
        reason = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
        stage = st["stage"]
        st["error"] = {"stage": stage, "reason": reason}
        touched = S.STAGES.index(stage) >= S.STAGES.index("expand") or _revision(ctx) != st["from_revision"]
        contracted = "contract" in st["completed"] and _revision(ctx) == st["to_revision"]
        interrupted = not isinstance(exc, Exception)
        with contextlib.suppress(Exception):
            _thaw(ctx)
        st["status"] = "interrupted" if interrupted else "failed"
        ctx.save()
        _evidence(ctx.target, kind, st, st["status"])
        if interrupted or contracted:
            raise
        if not touched:
            S.archive(ctx.target.data_dir, st)
            if isinstance(exc, ErpError):
                raise
            raise UpgradeError(f"the upgrade failed at stage {stage}: {reason}; nothing was changed",
                               fix="Fix the cause (see the log), then run the upgrade again.") from exc
        log.error("stage failed, rolling back", exc_info=True, extra={"stage": stage})
        ctx.say("stage failed, rolling back", stage=stage, reason=reason)
        try:
            _rollback_schema(ctx, reason)
        finally:
            with contextlib.suppress(Exception):
                _thaw(ctx)
        raise UpgradeFailed(f"the upgrade failed at stage {stage}: {reason}; rolled back to release "
                            f"{st['from_version']} (schema {st['from_revision']}), no row lost",
                            fix="Fix the cause (see the log and 'erpctl upgrade status'), then run the upgrade again.",
                            stage=stage) from None
    if st["status"] == "done":
        _evidence(ctx.target, kind, st, "ok")
        S.archive(ctx.target.data_dir, st)
    elif st["status"] == "awaiting_contract":
        _evidence(ctx.target, kind, st, "ok")
    return _summary(st)


def _summary(st: dict) -> dict:
    keys = ("id", "status", "stage", "from_version", "to_version", "from_revision", "to_revision",
            "completed", "error", "backup", "backfill", "started_at", "updated_at")
    out = {k: st.get(k) for k in keys}
    out["stages"] = {k: {kk: v.get(kk) for kk in ("seconds", "detail", "started_at", "finished_at")}
                     for k, v in st.get("stages", {}).items()}
    return out


def apply(opts: UpgradeOptions) -> dict:
    with S.exclusive(opts.target.data_dir):
        old = S.load(opts.target.data_dir)
        if old and old["status"] not in S.FINISHED:
            raise UpgradeError(f"upgrade {old['id']} to {old['to_version']} is {old['status']} at stage {old['stage']}",
                               fix="Continue it with 'erpctl upgrade resume' or undo it with 'erpctl upgrade rollback'.")
        ctx = _Ctx(opts, S.new())
        try:
            d = _describe(ctx)
            ctx.state.update({k: v for k, v in d.items()})
            ctx.state["options"] = {"erp_url": opts.erp_url, "soak_seconds": opts.soak_seconds,
                                    "stall_budget_ms": opts.stall_budget_ms, "repo": opts.repo,
                                    "key_file": str(opts.key_file) if opts.key_file else None}
            ctx.state["soak_seconds"] = opts.soak_seconds
            ctx.state["stall_budget_ms"] = opts.stall_budget_ms
            ctx.save()
            return _drive(ctx, "upgrade.apply")
        finally:
            ctx.close()


def _reopen(opts: UpgradeOptions, st: dict) -> UpgradeOptions:
    """Options of the original run, unless given again."""
    o = st.get("options") or {}
    opts.erp_url = opts.erp_url or o.get("erp_url")
    opts.repo = opts.repo or o.get("repo")
    opts.key_file = opts.key_file or (Path(o["key_file"]) if o.get("key_file") else None)
    opts.to_version = st["to_version"]
    return opts


def resume(opts: UpgradeOptions) -> dict:
    with S.exclusive(opts.target.data_dir):
        st = S.load(opts.target.data_dir)
        if not st or st["status"] in S.FINISHED:
            raise NoUpgrade("no upgrade to resume", fix="Start one with 'erpctl upgrade apply'.")
        ctx = _Ctx(_reopen(opts, st), st)
        try:
            S.event(st, "resume", stage=st["stage"], status=st["status"])
            st["status"], st["error"] = "running", None
            ctx.save()
            return _drive(ctx, "upgrade.resume")
        finally:
            ctx.close()


# ---- rollback --------------------------------------------------------------------------------------

def _rollback_schema(ctx: _Ctx, reason: str) -> dict:
    """Back to the old release and its exact schema, keeping every row (before contract only)."""
    st = ctx.state
    st["status"] = "rolling_back"
    S.event(st, "rollback", reason=reason)
    ctx.save()
    _freeze(ctx, "rolling back")
    cur = releases.current(ctx.target)
    if st.get("from_version") and (cur is None or cur.version != st["from_version"]):
        releases.set_current(ctx.target, st["from_version"])
    before_cat = st.get("catalogue_before") or {}
    detail: dict = {"reason": reason}
    if _revision(ctx) != st["from_revision"]:
        old_columns = {t: [c["name"] for c in v.get("columns", [])] for t, v in before_cat.get("tables", {}).items()}
        specs = checks.table_specs(ctx.engine, _tables_of(ctx), only=old_columns)
        before = checks.snapshot(ctx.engine, specs)
        failpoint("upgrade.rollback.before_downgrade")
        _migrate(ctx, st["from_revision"], down=True, point="upgrade.migration.downgrade")
        after = checks.snapshot(ctx.engine, specs)
        problems = checks.compare(before, after)
        if problems:
            raise UpgradeError(f"the downgrade changed rows: {problems[:5]}",
                               fix="Restore the pre-upgrade backup ('erpctl backup restore') and report this bug.")
        detail["rows_kept"] = {t: v["rows"] for t, v in after.items()}
    if before_cat:
        differences = cat.diff(before_cat, cat.catalogue(ctx.engine))
        if differences:
            raise UpgradeError(f"the schema after rollback differs from the one before the upgrade: {differences[:5]}",
                               fix="Restore the pre-upgrade backup ('erpctl backup restore') and report this bug.")
    found = checks.run_invariants(ctx.engine)
    if found:
        raise UpgradeError(f"invariants fail after rollback: {found[:3]}", fix="See 'erpctl erp check'.")
    _wait_serving(ctx, st["from_version"])
    _thaw(ctx)
    st["status"], st["stage"] = "rolled_back", "rolled_back"
    st["rollback"] = detail
    ctx.save()
    _evidence(ctx.target, "upgrade.rollback", st, "ok", rollback=detail)
    S.archive(ctx.target.data_dir, st)
    return detail


def writes_since_backup(ctx: _Ctx, limit: int = 200) -> dict:
    """The audit-log entries made after the pre-upgrade backup (the audit log is append-only, so the
    backup holds its first `audit_rows` entries): what restoring it loses. The upgrade's own
    maintenance switches are left out."""
    n = (ctx.state.get("backup") or {}).get("audit_rows")
    if n is None:
        return {"count": None, "entries": [], "note": "the backup recorded no audit-log row count"}
    with ctx.engine.connect() as c:
        last = c.execute(text("SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET :off"),
                         {"off": int(n) - 1}).scalar() if int(n) > 0 else 0
        where = "id > :last AND actor <> :own"
        params = {"last": last or 0, "own": UPGRADE_ACTOR}
        total = int(c.execute(text(f"SELECT count(*) FROM audit_log WHERE {where}"), params).scalar())
        rows = c.execute(text(f"SELECT id, at, actor, action, entity, entity_id FROM audit_log WHERE {where} "
                              "ORDER BY id LIMIT :lim"), {**params, "lim": limit}).all()
    return {"count": total, "since": ctx.state["backup"].get("created_at"), "entries": [
        {"id": r[0], "at": str(r[1]), "actor": r[2], "action": r[3], "entity": r[4], "entity_id": r[5]}
        for r in rows]}


def _rollback_restore(ctx: _Ctx, confirmed: bool) -> dict:
    st = ctx.state
    lost = writes_since_backup(ctx)
    if not confirmed:
        raise RollbackNeedsRestore(
            f"the schema was contracted: rolling back restores backup {st['backup']['id'][:8]} "
            f"({st['backup']['created_at']}) and loses {lost['count']} write(s) made since",
            fix="Run 'erpctl upgrade rollback --restore-backup' to accept that loss (the list is in --json).",
            lost=lost)
    from ..backup.restore import restore

    st["status"] = "rolling_back"
    S.event(st, "rollback-restore", backup=st["backup"]["id"], lost=lost["count"])
    ctx.save()
    result = restore(ctx.target, _open_repo(ctx), st["backup"]["id"])
    releases.set_current(ctx.target, st["from_version"])
    _wait_serving(ctx, st["from_version"])
    _thaw(ctx)
    st["status"], st["stage"] = "rolled_back", "rolled_back"
    st["rollback"] = {"restored": st["backup"]["id"], "lost": lost}
    ctx.save()
    _evidence(ctx.target, "upgrade.rollback", st, "ok", rollback={"restored": st["backup"]["id"],
                                                                  "lost_writes": lost["count"],
                                                                  "restore": {k: result.get(k) for k in ("phase", "backup")}})
    S.archive(ctx.target.data_dir, st)
    return st["rollback"]


def rollback(opts: UpgradeOptions, *, restore_backup: bool = False) -> dict:
    """Undo the upgrade in progress, or the last one if it finished (then by restoring its backup)."""
    with S.exclusive(opts.target.data_dir):
        st = S.load(opts.target.data_dir)
        if not st or st["status"] in S.FINISHED:
            last = (S.history(opts.target.data_dir) or [None])[-1]
            if not last or last["status"] != "done":
                raise NoUpgrade("no upgrade to roll back",
                                fix="Nothing to do; 'erpctl upgrade status' shows the last one.")
            st = last
        ctx = _Ctx(_reopen(opts, st), st)
        try:
            contracted = _revision(ctx) == st["to_revision"] and st.get("contract_revision")
            if contracted:
                detail = _rollback_restore(ctx, restore_backup)
            else:
                detail = _rollback_schema(ctx, "requested by the operator")
            return {**_summary(st), "rollback": detail}
        except BaseException:
            with contextlib.suppress(Exception):
                _thaw(ctx)
            raise
        finally:
            ctx.close()


# ---- status ----------------------------------------------------------------------------------------

def status(target: Target) -> dict:
    st = S.load(target.data_dir)
    if st is None:
        last = S.history(target.data_dir)
        return {"status": "none", "last": _summary(last[-1]) if last else None}
    out = _summary(st)
    out["maintenance_set_by_upgrade"] = bool((st.get("maintenance") or {}).get("set"))
    return out
