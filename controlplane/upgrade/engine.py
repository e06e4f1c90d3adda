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
import json
import logging
import time
from pathlib import Path

from erp_core import ops
from erp_core.errors import ErpError

from .. import http
from .. import release as releases
from ..backup.loss import ANY as ANY_LOSS
from ..backup.restore import restore
from ..backup.verify import verify_backup
from ..config import Target
from ..errors import NoUpgrade, PreflightFailed, RollbackNeedsRestore, UpgradeError, UpgradeFailed
from ..faults import failpoint
from . import catalogue as cat
from . import checks, state as S
from .backfill import run_backfills
from .plan import describe, plan, stage_plan
from .preflight import preflight
from .run import (UPGRADE_ACTOR, Run, UpgradeOptions, backfill_tables, backfills_of, freeze, migrate,
                  open_repo, record_evidence, revision, thaw, wait_serving)

log = logging.getLogger("controlplane.upgrade")

__all__ = ["UpgradeOptions", "apply", "plan", "resume", "rollback", "status"]


# ---- stages ----------------------------------------------------------------------------------------

def _stage_preflight(ctx: Run) -> dict:
    results = preflight(ctx, with_backup_repo="backup" not in ctx.state.completed)
    failed = [r for r in results if not r["ok"]]
    ctx.state.preflight = results
    if failed:
        raise PreflightFailed("preflight refused the upgrade: " + "; ".join(f"{r['check']}: {r['detail']}"
                                                                          for r in failed),
                              fix=failed[0]["fix"], checks=results)
    if ctx.state.catalogue_before is None:
        ctx.state.catalogue_before = cat.catalogue(ctx.engine)
    return {"checks": len(results)}


def _stage_backup(ctx: Run) -> dict:
    repo = open_repo(ctx)
    manifest = repo.create_backup(ctx.target)
    v = verify_backup(repo, manifest.id, level=3, target=ctx.target)
    if not v.ok:
        failed = v.failed
        raise UpgradeError(f"the pre-upgrade backup {manifest.short_id} failed verification at L{failed.level}: "
                           f"{failed.summary}", fix="Look at 'erpctl backup verify' output; fix the cause and retry.")
    ctx.state.backup = S.BackupTaken(id=manifest.id, repository=repo.url, created_at=manifest.created_at,
                                     verified_level=v.passed_level,
                                     audit_rows=(manifest.tables.get("audit_log") or {}).get("rows"))
    return {"backup": manifest.short_id, "verified_level": v.passed_level}


def _stage_expand(ctx: Run) -> dict:
    st = ctx.state
    if st.expand_revision and revision(ctx) == st.from_revision:
        migrate(ctx, st.expand_revision, point="upgrade.migration.expand")
    return {"revision": revision(ctx)}


def _stage_backfill(ctx: Run) -> dict:
    st = ctx.state
    bfs = backfills_of(st.backfill_revisions())
    budget = (ctx.opts.stall_budget_ms or st.stall_budget_ms or 0) / 1000 or None

    def on_progress(progress, canary):
        st.backfill = {"backfills": [p.as_dict() for p in progress], "canary": canary}
        ctx.save()

    figures = run_backfills(ctx.engine, bfs, budget=budget, on_progress=on_progress)
    st.backfill = figures
    if st.backfill_revision and revision(ctx) == st.expand_revision:
        migrate(ctx, st.backfill_revision, point="upgrade.migration.backfill")
    return {"rows": figures["rows"], "rows_per_second": figures["rows_per_second"],
            "canary": figures["canary"]}


def _stage_verify(ctx: Run) -> dict:
    freeze(ctx, "verifying")
    bfs = backfills_of(ctx.state.backfill_revisions())
    with ctx.engine.connect() as c:
        left = {b.name: n for b in bfs if (n := ops.remaining(c, b))}
    if left:
        raise UpgradeError(f"rows left unfilled after the backfill: {left}",
                           fix="A writer of the old release bypassed the compatibility triggers; see the log.")
    found = checks.run_invariants(ctx.engine)
    if found:
        raise UpgradeError(f"invariants fail after the backfill: {found[:3]}", fix="See 'erpctl erp check'.")
    leftovers = cat.leftovers(cat.catalogue(ctx.engine))
    if leftovers:
        raise UpgradeError(f"temporary objects left in the schema: {leftovers}", fix="See the log.")
    specs = checks.table_specs(ctx.engine, backfill_tables(ctx))
    snap = checks.snapshot(ctx.engine, specs)
    ctx.frozen_snapshot = (specs, snap, ctx.state.maintenance and ctx.state.maintenance.since)
    ctx.state.verified = {"rows": {t: v["rows"] for t, v in snap.items()}}
    return {"tables": {t: v["rows"] for t, v in snap.items()}, "invariants": "clean"}


def _stage_switch(ctx: Run) -> dict:
    st = ctx.state
    freeze(ctx, "switching release")
    releases.set_current(ctx.target, st.to_version)
    failpoint("upgrade.switch.after_set_current")
    wait_serving(ctx, st.to_version)
    return {"current": st.to_version}


def _contract_allowed(ctx: Run) -> tuple[bool, str]:
    st, opts = ctx.state, ctx.opts
    if opts.confirm_contract:
        return True, "confirmed"
    soak = opts.soak_seconds if opts.soak_seconds is not None else st.soak_seconds
    switched = st.stages["switch"].finished_epoch if "switch" in st.stages else None
    if soak is not None and switched is not None:
        wait = switched + soak - time.time()
        if wait > 0:
            ctx.say("soaking before contract", seconds=round(wait))
            _soak(ctx, wait)
        return True, f"soaked {soak:.0f} s"
    return False, "waiting for --confirm-contract or a soak period"


def _soak(ctx: Run, seconds: float) -> None:
    """Watch the ERP on the new release for the soak period; an unready ERP stops the upgrade before contract."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.opts.erp_url:
            try:
                code, body = http.get(ctx.opts.erp_url.rstrip("/") + "/readyz", timeout=5)
            except (OSError, ValueError) as exc:
                code, body = 0, {"error": str(exc)}
            if code != 200:
                raise UpgradeError(f"the ERP was not ready during the soak period ({code}: {json.dumps(body)[:200]})",
                                   fix="Investigate, then 'erpctl upgrade rollback' (before contract nothing is lost).")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _snapshot_before_contract(ctx: Run, specs: list) -> dict:
    """The checksums verify took, when this process has kept the ERP read-only since (no thaw in between:
    the tables cannot have changed), which spares contract one scan of them; else new ones."""
    kept = ctx.frozen_snapshot
    m = ctx.state.maintenance
    if kept is not None and kept[0] == specs and kept[2] is not None and m is not None and m.since == kept[2]:
        return kept[1]
    return checks.snapshot(ctx.engine, specs)


def _stage_contract(ctx: Run) -> dict:
    st = ctx.state
    freeze(ctx, "contracting the schema")
    specs = checks.table_specs(ctx.engine, backfill_tables(ctx))
    if revision(ctx) != st.to_revision:
        before = _snapshot_before_contract(ctx, specs)
        migrate(ctx, st.to_revision, point="upgrade.migration.contract")
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
    thaw(ctx)
    return {"revision": revision(ctx)}


STAGE_FUNCS = {"preflight": _stage_preflight, "backup": _stage_backup, "expand": _stage_expand,
               "backfill": _stage_backfill, "verify": _stage_verify, "switch": _stage_switch,
               "contract": _stage_contract}


# ---- driving ---------------------------------------------------------------------------------------

def _run_stages(ctx: Run) -> dict:
    st = ctx.state
    for name in S.STAGES:
        if name in st.completed:
            continue
        if name == "contract":
            allowed, why = _contract_allowed(ctx)
            if not allowed:
                thaw(ctx)
                st.status, st.stage = "awaiting_contract", "contract"
                ctx.save()
                ctx.say("switched; contract waits", reason=why)
                return st
        st.begin(name)
        ctx.save()
        failpoint(f"upgrade.before.{name}")
        ctx.say(f"stage {name}")
        t0 = time.perf_counter()
        detail = STAGE_FUNCS[name](ctx)
        st.end(name, detail, time.perf_counter() - t0)
        ctx.save()
        failpoint(f"upgrade.after.{name}")
    thaw(ctx)
    st.status, st.stage = "done", "done"
    ctx.save()
    return st


def _drive(ctx: Run, kind: str) -> dict:
    """Run the remaining stages. A failure before expand changed nothing; from expand until contract it
    rolls the schema back by itself; after contract it stops (going back means a restore: the operator's
    call). Ctrl+C leaves the state for resume or rollback."""
    st = ctx.state
    try:
        _run_stages(ctx)
    except BaseException as exc:
        reason = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
        stage = st.stage
        st.error = {"stage": stage, "reason": reason}
        touched = S.STAGES.index(stage) >= S.STAGES.index("expand") or revision(ctx) != st.from_revision
        contracted = "contract" in st.completed and revision(ctx) == st.to_revision
        interrupted = not isinstance(exc, Exception)
        with contextlib.suppress(Exception):
            thaw(ctx)
        st.status = "interrupted" if interrupted else "failed"
        ctx.save()
        record_evidence(ctx.target, kind, st, st.status)
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
                thaw(ctx)
        raise UpgradeFailed(f"the upgrade failed at stage {stage}: {reason}; rolled back to release "
                            f"{st.from_version} (schema {st.from_revision}), no row lost",
                            fix="Fix the cause (see the log and 'erpctl upgrade status'), then run the upgrade again.",
                            stage=stage) from None
    if st.status == "done":
        record_evidence(ctx.target, kind, st, "ok")
        S.archive(ctx.target.data_dir, st)
    elif st.status == "awaiting_contract":
        record_evidence(ctx.target, kind, st, "ok")
    return st.summary()


def apply(opts: UpgradeOptions) -> dict:
    with S.exclusive(opts.target.data_dir):
        old = S.load(opts.target.data_dir)
        if old and not old.finished:
            raise UpgradeError(f"upgrade {old.id} to {old.to_version} is {old.status} at stage {old.stage}",
                               fix="Continue it with 'erpctl upgrade resume' or undo it with 'erpctl upgrade rollback'.")
        ctx = Run(opts, S.new(runner=S.runner("apply")))
        try:
            d = describe(ctx)
            ctx.state.update(**d)
            ctx.state.estimates = {s["stage"]: s["seconds"] for s in stage_plan(ctx, d)["stages"]}
            ctx.state.options = S.RunOptions(erp_url=opts.erp_url, soak_seconds=opts.soak_seconds,
                                             stall_budget_ms=opts.stall_budget_ms, repo=opts.repo,
                                             key_file=str(opts.key_file) if opts.key_file else None)
            ctx.state.soak_seconds = opts.soak_seconds
            ctx.state.stall_budget_ms = opts.stall_budget_ms
            ctx.save()
            return _drive(ctx, "upgrade.apply")
        finally:
            ctx.close()


def _reopen(opts: UpgradeOptions, st: S.UpgradeState) -> UpgradeOptions:
    """Options of the original run, unless given again."""
    o = st.options or S.RunOptions()
    opts.erp_url = opts.erp_url or o.erp_url
    opts.repo = opts.repo or o.repo
    opts.key_file = opts.key_file or (Path(o.key_file) if o.key_file else None)
    opts.to_version = st.to_version
    return opts


def resume(opts: UpgradeOptions) -> dict:
    with S.exclusive(opts.target.data_dir):
        st = S.load(opts.target.data_dir)
        if not st or st.finished:
            raise NoUpgrade("no upgrade to resume", fix="Start one with 'erpctl upgrade apply'.")
        ctx = Run(_reopen(opts, st), st)
        try:
            st.event("resume", stage=st.stage, status=st.status)
            st.status, st.error, st.runner = "running", None, S.runner("resume")
            ctx.save()
            return _drive(ctx, "upgrade.resume")
        finally:
            ctx.close()


# ---- rollback --------------------------------------------------------------------------------------

def _rollback_schema(ctx: Run, reason: str) -> dict:
    """Back to the old release and its exact schema, keeping every row (before contract only)."""
    st = ctx.state
    st.status = "rolling_back"
    st.event("rollback", reason=reason)
    ctx.save()
    freeze(ctx, "rolling back")
    cur = releases.current(ctx.target)
    if st.from_version and (cur is None or cur.version != st.from_version):
        releases.set_current(ctx.target, st.from_version)
    before_cat = st.catalogue_before or {}
    detail: dict = {"reason": reason}
    if revision(ctx) != st.from_revision:
        old_columns = {t: [c["name"] for c in v.get("columns", [])] for t, v in before_cat.get("tables", {}).items()}
        specs = checks.table_specs(ctx.engine, backfill_tables(ctx), only=old_columns)
        before = checks.snapshot(ctx.engine, specs)
        failpoint("upgrade.rollback.before_downgrade")
        migrate(ctx, st.from_revision, down=True, point="upgrade.migration.downgrade")
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
    wait_serving(ctx, st.from_version)
    thaw(ctx)
    st.status, st.stage = "rolled_back", "rolled_back"
    st.rollback = detail
    ctx.save()
    record_evidence(ctx.target, "upgrade.rollback", st, "ok", rollback=detail)
    S.archive(ctx.target.data_dir, st)
    return detail


def writes_since_backup(ctx: Run, limit: int = 200) -> dict:
    """The audit-log entries made after the pre-upgrade backup (the audit log is append-only, so the
    backup holds its first `audit_rows` entries): what restoring it loses. The upgrade's own
    maintenance switches are left out."""
    taken = ctx.state.backup
    n = taken.audit_rows if taken else None
    if n is None:
        return {"count": None, "entries": [], "note": "the backup recorded no audit-log row count"}
    lost = ops.writes_since(ctx.engine, audit_rows=int(n), exclude_actors=(UPGRADE_ACTOR,), limit=limit)
    return {"count": lost["count"], "since": taken.created_at, "entries": lost["entries"]}


def _rollback_restore(ctx: Run, confirmed: bool) -> dict:
    st = ctx.state
    lost = writes_since_backup(ctx)
    if not confirmed:
        raise RollbackNeedsRestore(
            f"the schema was contracted: rolling back restores backup {st.backup.id[:8]} "
            f"({st.backup.created_at}) and loses {lost['count']} write(s) made since",
            fix="Run 'erpctl upgrade rollback --restore-backup' to accept that loss (the list is in --json).",
            lost=lost)
    st.status = "rolling_back"
    st.event("rollback-restore", backup=st.backup.id, lost=lost["count"])
    ctx.save()
    # the operator accepted the loss listed above (--restore-backup); the restore lists it again exactly,
    # keeps the list and raises the numbering so nothing handed out since is handed out again
    result = restore(ctx.target, open_repo(ctx), st.backup.id, discard_writes=ANY_LOSS)
    releases.set_current(ctx.target, st.from_version)
    wait_serving(ctx, st.from_version)
    thaw(ctx)
    st.status, st.stage = "rolled_back", "rolled_back"
    st.rollback = {"restored": st.backup.id, "lost": lost}
    ctx.save()
    restored = {k: result.get(k) for k in ("phase", "backup", "loss")}
    record_evidence(ctx.target, "upgrade.rollback", st, "ok", rollback={"restored": st.backup.id,
                                                                  "lost_writes": lost["count"], "restore": restored})
    S.archive(ctx.target.data_dir, st)
    return st.rollback


def rollback(opts: UpgradeOptions, *, restore_backup: bool = False) -> dict:
    """Undo the upgrade in progress, or the last one if it finished (then by restoring its backup)."""
    with S.exclusive(opts.target.data_dir):
        st = S.load(opts.target.data_dir)
        if not st or st.finished:
            last = (S.history(opts.target.data_dir) or [None])[-1]
            if not last or last.status != "done":
                raise NoUpgrade("no upgrade to roll back",
                                fix="Nothing to do; 'erpctl upgrade status' shows the last one.")
            st = last
        st.runner = S.runner("rollback")
        ctx = Run(_reopen(opts, st), st)
        try:
            contracted = revision(ctx) == st.to_revision and st.contract_revision
            if contracted:
                detail = _rollback_restore(ctx, restore_backup)
            else:
                detail = _rollback_schema(ctx, "requested by the operator")
            return {**st.summary(), "rollback": detail}
        except BaseException:
            with contextlib.suppress(Exception):
                thaw(ctx)
            raise
        finally:
            ctx.close()


# ---- status ----------------------------------------------------------------------------------------

def status(target: Target) -> dict:
    """The upgrade in progress, or the last finished one (state.status)."""
    return S.status(target.data_dir)
