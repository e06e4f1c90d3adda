"""One upgrade run: its options, its database engine, and the actions every stage takes with them:
maintenance mode, migrating, waiting for the ERP on a release, recording evidence."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine

from erp_core import ops

from .. import http
from ..backup import access
from ..config import Target
from ..errors import NoUpgrade, UpgradeError
from ..installation import Installation
from ..evidence import EvidenceLog
from ..faults import failpoint
from . import state as S

log = logging.getLogger("controlplane.upgrade")

LOCK_TIMEOUT = "3s"
DDL_ATTEMPTS = 5
SWITCH_TIMEOUT_SECONDS = 90
UPGRADE_ACTOR = "erpctl-upgrade"  # the audit log's actor for the upgrade's own writes
READ_ONLY_STAGES = ("verify", "switch", "contract")  # the ERP is in maintenance mode during these
DEFAULT_STAGE_SECONDS = 5.0  # a stage a state written before estimates were recorded has none for


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
    ask_passphrase: Callable[[], str | None] | None = None  # the CLI's prompt when no key is configured
    on_event: Callable[[str, dict], None] | None = None


# ---- what the code ships -------------------------------------------------------------------------

def bundled_checksums() -> dict[str, str]:
    """sha256 of each migration file this erpctl carries, by revision."""
    out = {}
    for script in ops.script_directory().walk_revisions():
        out[script.revision] = hashlib.sha256(Path(script.path).read_bytes()).hexdigest()
    return out


def pending_migrations(from_rev: str | None) -> list[dict]:
    migrations = ops.known_migrations()
    revs = [m["revision"] for m in migrations]
    if from_rev not in revs:
        raise NoUpgrade(f"the database is at revision {from_rev!r}, which this erpctl does not know",
                        fix="Use the erpctl of the release that migrated it.")
    return migrations[revs.index(from_rev) + 1:]


def stage_groups(pending: list[dict]) -> dict[str, str | None]:
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


def backfills_of(revisions: list[str]) -> list:
    out = []
    for rev in revisions:
        out.extend(ops.backfills(rev))
    return out


# ---- small pieces ---------------------------------------------------------------------------------

class Run:
    """One run: the options, the state, an engine."""

    def __init__(self, opts: UpgradeOptions, state: S.UpgradeState):
        self.opts = opts
        self.target = opts.target
        self.state = state
        self.engine: Engine = ops.make_engine(opts.target.database_url, pool_size=2, max_overflow=2)
        self.dialect = self.engine.dialect.name
        self.frozen_snapshot: tuple | None = None  # (specs, checksums, maintenance since) taken by verify

    def save(self) -> None:
        S.save(self.target.data_dir, self.state)

    def say(self, what: str, **data) -> None:
        log.info(what, extra=data)
        if self.opts.on_event:
            self.opts.on_event(what, data)

    def close(self) -> None:
        self.engine.dispose()


def maintenance(url: str, enabled: bool | None, reason: str = "", until: float | None = None,
                retry_after: int | None = None) -> dict:
    return ops.switch_maintenance(url, enabled, reason, actor=UPGRADE_ACTOR, until=until, retry_after=retry_after)


def read_only_left(ctx: Run) -> float:
    """The plan's estimate of the read-only time left from the current stage on (seconds): the read-only
    stages not done yet (contract only when it runs right after the switch); a rollback, the time of a
    migration and a switch."""
    st, est = ctx.state, ctx.state.estimates or {}
    if st.status == "rolling_back":
        return est.get("expand", 1) + est.get("switch", DEFAULT_STAGE_SECONDS)
    left = [s for s in READ_ONLY_STAGES if s not in st.completed]
    if not ctx.opts.confirm_contract and st.stage != "contract":
        left = [s for s in left if s != "contract"]
    return sum(est.get(s, DEFAULT_STAGE_SECONDS) for s in left)


def freeze(ctx: Run, why: str) -> None:
    """Maintenance mode for the upgrade; refused writes are told to retry when the plan expects the
    read-only time to end (Retry-After, at least 1 s)."""
    if ctx.state.maintenance is None:
        ctx.state.maintenance = S.MaintenanceHold()
    m = ctx.state.maintenance
    if not m.set:
        m.prior = maintenance(ctx.target.database_url, None)
        m.set, m.since = True, time.time()
        ctx.save()  # before switching: a kill after this is cleaned up by resume or rollback
    maintenance(ctx.target.database_url, True, f"upgrade {ctx.state.id}: {why}",
                until=time.time() + read_only_left(ctx))


def thaw(ctx: Run) -> None:
    m = ctx.state.maintenance
    if m is None or not m.set:
        return
    prior = m.prior or {"enabled": False, "reason": ""}
    maintenance(ctx.target.database_url, bool(prior.get("enabled")), prior.get("reason", ""),
                until=prior.get("until"), retry_after=prior.get("retry_after"))
    m.set = False
    if m.since:  # how long the ERP refused writes for the upgrade, for comparing with the plan
        m.read_only_seconds = round(time.time() - m.since, 2)
    ctx.save()


def migrate(ctx: Run, revision: str, *, down: bool = False, point: str) -> None:
    """Alembic upgrade (or downgrade) to `revision`, each migration in its own transaction (env.py), so a
    failure or a kill inside one leaves the schema as it was before it. PostgreSQL waits at most
    LOCK_TIMEOUT for a table lock (so writers never queue behind a waiting ALTER for long); a lock timeout
    or a deadlock with a writer rolls that migration's transaction back whole, and the step is retried.
    The failpoint `point` fires inside each migration's transaction."""
    from alembic import command

    for attempt in range(1, DDL_ATTEMPTS + 1):
        try:
            with ctx.engine.connect() as conn:
                if ctx.dialect == "postgresql":
                    conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
                    conn.commit()
                cfg = ops.alembic_config(ctx.target.database_url)
                cfg.attributes["connection"] = conn
                cfg.attributes["on_applied"] = lambda _rev: failpoint(point)
                (command.downgrade if down else command.upgrade)(cfg, revision)
            return
        except Exception as exc:  # noqa: BLE001 - only lock timeouts and deadlocks are retried
            if not _lock_conflict(exc) or attempt == DDL_ATTEMPTS:
                raise
            ctx.say("lock timeout or deadlock with a writer, retrying", step=point, attempt=attempt)
            time.sleep(attempt)


def _lock_conflict(exc: Exception) -> bool:
    """A lock timeout (55P03) or a deadlock with a live writer (40P01): nothing of the migration stays."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return sqlstate in ("55P03", "40P01") or "lock timeout" in str(exc).lower()


def revision(ctx: Run) -> str | None:
    return ops.current_revision(ctx.engine)


def wait_serving(ctx: Run, version: str, timeout: float = SWITCH_TIMEOUT_SECONDS) -> None:
    """Wait until the ERP at --erp-url reports `version` (erpctl up restarts it on the current release)."""
    url = ctx.opts.erp_url
    if not url:
        return
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            code, body = http.get(url.rstrip("/") + "/healthz", timeout=5)
            seen = (body or {}).get("version")
            if code == 200 and seen == version:
                return
        except (OSError, ValueError):
            seen = "no answer"
        time.sleep(0.1)
    raise UpgradeError(f"the ERP at {url} did not come back on release {version} within {timeout:.0f} s "
                       f"(it reports {seen!r})",
                       fix="Check that 'erpctl up' runs on this data directory (it follows the current release) "
                           "and look at its log; then 'erpctl upgrade resume' or 'erpctl upgrade rollback'.")


def record_evidence(target: Target, kind: str, state: S.UpgradeState, outcome: str, **extra) -> None:
    summary = state.summary()
    data = {k: summary[k] for k in ("id", "from_version", "to_version", "from_revision", "to_revision",
                                    "status", "stage", "completed", "error", "backup")}
    data["stages"] = {k: {kk: v[kk] for kk in ("seconds", "detail")} for k, v in summary["stages"].items()}
    data.update(extra)
    EvidenceLog(target.data_dir).append(kind, data, outcome=outcome)


def database_bytes(ctx: Run) -> int:
    path = ctx.target.sqlite_path
    if path is not None:
        return sum(p.stat().st_size for p in (path, Path(str(path) + "-wal")) if p.exists())
    with ctx.engine.connect() as c:
        return int(c.execute(text("SELECT pg_database_size(current_database())")).scalar())


def open_repo(ctx: Run):
    """The installation's backup repository (--repo and --key-file first), as `erpctl backup` opens it."""
    inst = Installation.open(ctx.target.data_dir, ctx.target.database_url, backup_repo=ctx.opts.repo,
                             backup_key_file=ctx.opts.key_file)
    keyless = not inst.get("backup_passphrase") and inst.get("backup_key_file") is None
    asked = ctx.opts.ask_passphrase() if keyless and ctx.opts.ask_passphrase else None
    return access.open_repo(inst, passphrase=asked, lock_wait=ctx.opts.lock_wait)


def backfill_tables(ctx: Run) -> list[str]:
    bfs = backfills_of(ctx.state.backfill_revisions())
    return sorted({b.table for b in bfs})
