"""Fail-closed restore, a resumable state machine with its state in the data directory.

    verifying      the backup is materialised into <data dir>/restore/<run>/ (SQLite) or into a new
                   database <live>_restore_<ts> on the live server (PostgreSQL) and verified
                   through L3 (chunks, engine checks, fingerprint and invariants)
    maintenance    the live ERP is switched to maintenance (read-only) mode and the verified copy
                   is marked the same way, so the ERP stays read-only across the swap
    swapping       SQLite: the copy is written into the live database with SQLite's online backup
                   API in one transaction (the same file, so every process that has it open, the
                   running ERP included, sees the new content at once, and a crash rolls back);
                   when there is no live file yet, the copy is renamed into place (os.replace).
                   PostgreSQL: connections to the live database are refused and terminated, then
                   ALTER DATABASE live RENAME TO live_pre_restore_<ts> and new -> live in ONE
                   transaction; the old database is dropped once the swap succeeded
    swapped        maintenance mode is set back to what it was before the restore (off)
    done | refused | rolled_back

Every step writes the state (write, fsync, rename) before acting. A run killed at any point is
finished or rolled back by the next `erpctl backup restore` (or `recover()`): before the swap
committed, the live data is untouched and only the maintenance flag and the scratch copy are
cleaned up; after it, the restore is completed. On any failure the live data is untouched.

With `into=DIR` (--target DIR) the verified copy is placed in DIR for inspection and nothing
live is touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import secrets
import shutil
import sqlite3
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from erp_core import ops

from .. import config, results
from ..errors import ControlPlaneError, RestoreFailed, RestoreRefused
from ..evidence import EvidenceLog
from ..faults import failpoint
from ..fsutil import atomic_write_text, fsync_dir
from .. import layout
from ..installation import check_version
from . import loss, scratch
from . import verify as V

log = logging.getLogger("controlplane.backup.restore")

STATE_DIR = layout.name("restore")
STATE_FILE = layout.basename("restore_state")
STATE_VERSION = 1  # of the state record; states written before it had one are version 1
FINAL = ("done", "refused", "rolled_back")
TERMINATE_TIMEOUT = 15.0
# a refused restore's advice: another backup, or heal this one (damaged chunks the live database still holds)
REFUSED_FIX = ("Run 'erpctl backup verify' on the other backups and restore one that passes; for damaged chunks "
               "(L1), 'erpctl backup repair' says whether 'erpctl backup create' heals this backup.")


# ---- state on disk ------------------------------------------------------------------------------

def _state_dir(target: config.Target) -> Path:
    return target.data_dir / STATE_DIR


def read_state(target: config.Target) -> dict | None:
    path = _state_dir(target) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # a torn write cannot happen (atomic rename); a hand-edited file can
        raise RestoreFailed(f"the restore state {path} is not readable JSON",
                            fix="Inspect it; if no restore is running, move it away and run the restore again.")
    check_version(state, STATE_VERSION, str(path))
    return state


def _write_state(target: config.Target, state: dict) -> None:
    d = _state_dir(target)
    d.mkdir(parents=True, exist_ok=True)
    state["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
    atomic_write_text(d / STATE_FILE, json.dumps(state, indent=1, default=str))


def _phase(target: config.Target, state: dict, phase: str) -> None:
    state["phase"] = phase
    state.setdefault("phases", []).append([phase, round(time.time(), 3)])
    _write_state(target, state)
    log.info("restore phase", extra={"run": state["run"], "phase": phase, "backup": state["backup"]})


@contextlib.contextmanager
def _restore_lock(target: config.Target):
    d = _state_dir(target)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / layout.basename("restore_lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RestoreFailed("another restore is running on this data directory",
                                fix="Wait for it to finish ('erpctl backup restore' shows its state when done).") \
                from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---- the maintenance switch (erp_core.ops) --------------------------------------------------------

def _maintenance(url: str, enabled: bool | None = None, reason: str = "") -> dict:
    return ops.switch_maintenance(url, enabled, reason, actor="erpctl-restore")


def _live_switch(url: str) -> tuple[dict | None, str | None]:
    """The live database's maintenance switch, or (None, why) when the live database cannot hold it: a new
    empty database (no ERP schema yet) or a damaged one. A restore goes on without it: it repairs that."""
    try:
        return _maintenance(url), None
    except (SQLAlchemyError, sqlite3.Error) as exc:
        orig = getattr(exc, "orig", None) or exc
        why = f"{type(orig).__name__}: {(str(orig).strip().splitlines() or [''])[0][:200]}"
        log.warning("the live database's maintenance switch cannot be read", extra={"error": why})
        return None, f"the maintenance switch (the ERP could not be made read-only before the swap): {why}"


def _live_maintenance(url: str) -> dict | None:
    return _live_switch(url)[0]


def _swap_marker(state: dict) -> str:
    return f"restore {state['run']}: backup {state['backup']} swapped in"


def _pre_swap_reason(state: dict) -> str:
    return f"restore {state['run']}: swapping in backup {state['backup']}"


def _restore_prior_maintenance(url: str, state: dict) -> None:
    prior = state.get("prior_maintenance") or {"enabled": False, "reason": ""}
    _maintenance(url, bool(prior.get("enabled")), prior.get("reason", ""))


# ---- swaps -------------------------------------------------------------------------------------

def _sqlite_swap(copy: Path, live: Path) -> str:
    """Write the verified copy into the live database in one transaction (or rename it into place
    when there is no live database yet). Returns how it was done."""
    if not live.exists():
        for suffix in ("-wal", "-shm", "-journal"):  # stale companions of a missing file
            with contextlib.suppress(FileNotFoundError):
                Path(str(live) + suffix).unlink()
        os.replace(copy, live)
        fsync_dir(live.parent)
        return "renamed into place (no live database)"
    src = sqlite3.connect(copy)
    dst = sqlite3.connect(live, isolation_level=None, timeout=60)
    how = "written into the live database in one transaction (SQLite online backup API)"
    try:
        dst.execute("PRAGMA busy_timeout=60000")
        try:
            src.backup(dst, pages=-1)  # one step: one write transaction on the live database
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # busy, locked: not damage
                raise
            # a live file cut short (its header counts more pages than it holds) is refused as malformed:
            # this connection may open it all the same, and the backup overwrites every page of it
            log.warning("the live database is damaged; writing the copy over it", extra={"error": str(exc)})
            dst.execute("PRAGMA writable_schema=ON")
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA writable_schema=OFF")
            how += f", over a damaged file ({exc})"
        with contextlib.suppress(sqlite3.Error):
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        dst.close()
        src.close()
    return how


def _pg_live_name(target: config.Target) -> str:
    return make_url(target.database_url).database


def _pg_terminate(conn, name: str) -> None:
    conn.execute(text(f"ALTER DATABASE {scratch._quote_ident(name)} ALLOW_CONNECTIONS false"))
    deadline = time.monotonic() + TERMINATE_TIMEOUT
    while True:
        left = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name}).scalar()
        if not left:
            return
        if time.monotonic() > deadline:
            raise RestoreFailed(f"connections to database {name} did not end within {TERMINATE_TIMEOUT:.0f} s")
        time.sleep(0.2)


def _pg_swap(target: config.Target, state: dict) -> str:
    server = target.database_url
    live, new, old = state["live_database"], state["scratch_database"], state["previous_database"]
    with scratch.pg_admin(server) as c:
        _pg_terminate(c, new)
        try:
            _pg_terminate(c, live)
            c.execute(text("BEGIN"))
            c.execute(text(f"ALTER DATABASE {scratch._quote_ident(live)} RENAME TO {scratch._quote_ident(old)}"))
            c.execute(text(f"ALTER DATABASE {scratch._quote_ident(new)} RENAME TO {scratch._quote_ident(live)}"))
            c.execute(text("COMMIT"))
        except BaseException:
            with contextlib.suppress(Exception):
                c.execute(text("ROLLBACK"))
            with contextlib.suppress(Exception):
                c.execute(text(f"ALTER DATABASE {scratch._quote_ident(live)} ALLOW_CONNECTIONS true"))
            raise
        c.execute(text(f"ALTER DATABASE {scratch._quote_ident(live)} ALLOW_CONNECTIONS true"))
        c.execute(text(f"ALTER DATABASE {scratch._quote_ident(old)} ALLOW_CONNECTIONS true"))
    return f"databases renamed in one transaction: {live} -> {old}, {new} -> {live}"


def _pg_swapped(target: config.Target, state: dict) -> bool:
    """After a crash in 'swapping': the renames are one transaction, so the previous database's
    new name exists exactly when the swap committed."""
    return scratch.pg_database_exists(target.database_url, state["previous_database"])


# ---- the state machine -------------------------------------------------------------------------

def _new_state(target: config.Target, backup_id: str, engine: str) -> dict:
    ts = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    run = f"{ts}-{secrets.token_hex(3)}"
    state = {"version": STATE_VERSION, "run": run, "backup": backup_id, "engine": engine, "phase": "new", "phases": [],
             "started_at": dt.datetime.now(dt.UTC).isoformat(),
             "workdir": str(_state_dir(target) / run), "pid": os.getpid()}
    if engine == "postgresql":
        live = _pg_live_name(target)
        state["live_database"] = live
        state["scratch_database"] = f"{live[:30]}_restore_{ts}"
        state["previous_database"] = f"{live[:30]}_pre_restore_{ts}"
    else:
        state["live_path"] = str(target.sqlite_path)
    return state


def _cleanup_copy(target: config.Target, state: dict) -> None:
    if state.get("engine") == "postgresql" and state.get("scratch_database"):
        with contextlib.suppress(Exception):
            scratch.pg_drop_database(target.database_url, state["scratch_database"])
    if state.get("workdir"):
        shutil.rmtree(state["workdir"], ignore_errors=True)


def _rollback(target: config.Target, state: dict, reason: str) -> None:
    """Nothing live was swapped: put the maintenance flag back, drop the copy."""
    if state.get("maintenance_set"):
        _restore_prior_maintenance(target.database_url, state)
        state["maintenance_set"] = False
    _cleanup_copy(target, state)
    state["error"] = reason
    _phase(target, state, "rolled_back")


def _finish(target: config.Target, state: dict, keep_previous: bool) -> None:
    """The swap committed: live maintenance back as before the restore, old data and copy removed."""
    if state["engine"] == "postgresql":  # killed between the renames and re-allowing connections
        with scratch.pg_admin(target.database_url) as c:
            c.execute(text(f"ALTER DATABASE {scratch._quote_ident(state['live_database'])} ALLOW_CONNECTIONS true"))
    loss.publish(state)
    _restore_prior_maintenance(target.database_url, state)
    state["maintenance_set"] = False
    if state["engine"] == "postgresql" and not keep_previous:
        scratch.pg_drop_database(target.database_url, state["previous_database"])
        state["previous_dropped"] = True
    if state["engine"] == "sqlite":
        shutil.rmtree(state["workdir"], ignore_errors=True)
    _phase(target, state, "done")


def recover(target: config.Target) -> dict | None:
    """Finish or roll back a restore that was killed; None when there was nothing to do."""
    with _restore_lock(target):
        return _recover(target)


def _recover(target: config.Target) -> dict | None:
    state = read_state(target)
    if not state or state.get("phase") in FINAL:
        return None
    phase = state["phase"]
    log.warning("resuming an interrupted restore", extra={"run": state["run"], "phase": phase})
    swapped = phase == "swapped"
    if phase == "swapping":
        if state["engine"] == "postgresql":
            swapped = _pg_swapped(target, state)
            if not swapped:
                with scratch.pg_admin(target.database_url) as c:
                    c.execute(text(f"ALTER DATABASE {scratch._quote_ident(state['live_database'])} ALLOW_CONNECTIONS true"))
        else:
            live = Path(state["live_path"])
            swapped = live.exists() and (_live_maintenance(f"sqlite:///{live}") or {}).get("reason") == _swap_marker(state)
    if swapped:
        _finish(target, state, keep_previous=bool(state.get("keep_previous")))
        outcome = "completed"
    else:
        _rollback(target, state, f"interrupted in phase {phase!r}; rolled back by the next run")
        outcome = "rolled_back"
    EvidenceLog(target.data_dir).append("backup.restore", {"backup": state["backup"], "run": state["run"],
                                                            "recovered_from_phase": phase, "result": outcome},
                                        outcome="ok" if swapped else "failed")
    return {"run": state["run"], "backup": state["backup"], "interrupted_phase": phase, "result": outcome}


def restore(target: config.Target, repo, backup_id: str, *, into: Path | None = None,
            progress: V.Progress | None = None, keep_previous: bool = False,
            scratch_database_url: str | None = None, discard_writes: int | str | None = None) -> dict:
    """Restore one backup: into the live database (fail-closed, atomic swap) or, with `into`, into a
    directory for inspection. Raises RestoreRefused when verification fails (nothing touched), and
    WritesWouldBeDiscarded unless `discard_writes` is the number of writes made since the backup that
    an in-place restore discards (loss.ANY: any number, the caller had the loss accepted).
    Failpoints (controlplane.faults): restore.before_swap, restore.after_swap."""
    progress = progress or V._noop
    if into is not None:
        return _restore_into(target, repo, backup_id, Path(into), progress, scratch_database_url)
    t0 = time.perf_counter()
    with _restore_lock(target):
        recovered = _recover(target)
        manifest = V._manifest_dict(repo.load_manifest(backup_id))
        backup_id = str(manifest.get("id") or backup_id)
        engine = V._engine_of(manifest)
        _check_restorable(target, backup_id, engine)
        if _in_place(target, engine):  # early, cheap: the count only grows while the ERP is not read-only
            loss.confirm(loss.since_backup(target, manifest, limit=0), discard_writes, backup_id,
                         exact=bool((_live_maintenance(target.database_url) or {}).get("enabled")))
        state = _new_state(target, backup_id, engine)
        state["keep_previous"] = keep_previous
        _phase(target, state, "verifying")
        ladder, verification = _verify_copy(target, repo, state, progress, t0)
        try:
            progress("swap", None, None)
            _swap(target, state, ladder.copy, manifest, discard_writes)
        except BaseException as exc:
            if not _committed_despite(target, state):
                _fail_before_swap(target, state, exc, t0)
        _finish(target, state, keep_previous)
        duration = time.perf_counter() - t0
        results.record(target.data_dir, "backup.restore", True, backup=backup_id, duration=round(duration, 3),
                       engine=engine)
        EvidenceLog(target.data_dir).append("backup.restore", {
            "backup": backup_id, "run": state["run"], "into": "live", "result": "swapped", "engine": engine,
            "swap": state["swap"], "verified_through": 3, "duration_seconds": round(duration, 3),
            "loss_window": state.get("loss")})
        return {"backup": backup_id, "run": state["run"], "engine": engine, "into": "live", "loss": state.get("loss"),
                "database": target.display_url, "ok": True, "swap": state["swap"],
                "previous_database": state.get("previous_database") if keep_previous else None,
                "duration_seconds": round(duration, 3), "swap_seconds": state.get("swap_seconds"),
                "verification": verification.as_dict(), "recovered": recovered}


def _in_place(target: config.Target, engine: str) -> bool:
    """Whether the restore replaces a live database (not a missing SQLite file)."""
    return engine == "postgresql" or target.sqlite_path.exists()


def discarded_by(target: config.Target, repo, backup_id: str) -> dict:
    """What restoring the backup in place would discard, as of now (--dry-run; nothing changes). While
    the ERP takes writes the number grows; in maintenance mode it holds."""
    manifest = V._manifest_dict(repo.load_manifest(backup_id))
    engine = V._engine_of(manifest)
    _check_restorable(target, str(manifest.get("id") or backup_id), engine)
    in_place = _in_place(target, engine)
    found = loss.since_backup(target, manifest, limit=None) if in_place else {"count": 0, "entries": [], "groups": []}
    return {**found, "backup": manifest["id"], "backup_time": manifest["created_at"], "in_place": in_place,
            "maintenance": _live_maintenance(target.database_url) if in_place else None}


def _check_restorable(target: config.Target, backup_id: str, engine: str) -> None:
    if engine != target.backend:
        raise RestoreRefused(f"backup {backup_id} is a {engine} backup; the live database is {target.backend}",
                             fix="Restore it with --target DIR, or point --database-url at a matching database.")
    if engine == "postgresql" and not scratch.pg_database_exists(target.database_url, _pg_live_name(target)):
        raise RestoreRefused(f"the live database {_pg_live_name(target)} does not exist",
                             fix="Create it (empty) first, or restore with --target DIR.")


def _verify_copy(target: config.Target, repo, state: dict, progress, t0: float):
    """Materialise the backup and verify it through L3: (the ladder holding the copy, the verification).
    A copy that fails is removed and the restore refused (RestoreRefused), the live data untouched."""
    engine, backup_id = state["engine"], state["backup"]
    ladder = V.Ladder(repo, backup_id, workdir=Path(state["workdir"]),
                      server_url=target.database_url if engine == "postgresql" else None,
                      field_key=V.default_field_key(target), progress=progress,
                      scratch_database=state.get("scratch_database"), keep_copy=True)
    try:
        levels = ladder.run(3)
    except BaseException as exc:
        ladder.keep_copy = False
        ladder.close()
        _rollback(target, state, f"verification could not run: {exc}")
        raise
    verification = V.Verification(backup_id, 3, engine, levels, time.perf_counter() - t0)
    V.record_verification(target.data_dir, verification, extra={"for": "restore", "run": state["run"]})
    state["verification"] = {"ok": verification.ok, "passed_level": verification.passed_level,
                             "levels": [{"level": l.level, "ok": l.ok, "duration_seconds": round(l.duration_seconds, 3),
                                         "summary": l.summary} for l in levels]}
    if verification.ok:
        return ladder, verification
    ladder.keep_copy = False
    ladder.close()
    _cleanup_copy(target, state)
    failed = verification.failed
    state["error"] = failed.summary
    _phase(target, state, "refused")
    duration = time.perf_counter() - t0
    results.record(target.data_dir, "backup.restore", False, backup=backup_id, duration=round(duration, 3),
                   refused=True, failed_level=failed.level)
    EvidenceLog(target.data_dir).append("backup.restore", {
        "backup": backup_id, "run": state["run"], "into": "live", "result": "refused",
        "failed_level": failed.level, "failure": failed.summary, "problems": failed.problems[:20],
        "live_data": "untouched", "duration_seconds": round(duration, 3)}, outcome="refused")
    raise RestoreRefused(f"backup {backup_id} failed verification at L{failed.level} ({failed.name}): "
                         f"{failed.summary}; the live data is untouched",
                         fix=REFUSED_FIX,
                         verification=verification.as_dict())


def _swap(target: config.Target, state: dict, copy, manifest: dict, discard_writes) -> None:
    """Maintenance on (the live ERP read-only), the writes since the backup listed and confirmed, the
    copy's numbering raised to the live database's and the copy marked with this run, then the swap."""
    engine = state["engine"]
    if engine == "postgresql" or Path(state["live_path"]).exists():
        prior, problem = _live_switch(target.database_url)  # empty or damaged: no switch to set, the swap repairs it
        state["prior_maintenance"] = prior or {"enabled": False, "reason": ""}
        state["maintenance_set"] = problem is None
        state["live_unreadable"] = [problem] if problem else []
        _phase(target, state, "maintenance")
        if problem is None:
            _maintenance(target.database_url, True, _pre_swap_reason(state))
        state["loss"] = loss.account(target, state, manifest, copy.database_url, discard_writes)
        _write_state(target, state)
    else:
        state["prior_maintenance"] = {"enabled": False, "reason": ""}
    _maintenance(copy.database_url, True, _swap_marker(state))  # the copy carries the flag across the swap
    if engine == "sqlite":
        scratch.sqlite_close_cleanly(copy.artifact_path)
    failpoint("restore.before_swap")
    _phase(target, state, "swapping")
    t_swap = time.perf_counter()
    state["swap"] = (_sqlite_swap(copy.artifact_path, Path(state["live_path"])) if engine == "sqlite"
                     else _pg_swap(target, state))
    state["swap_seconds"] = round(time.perf_counter() - t_swap, 3)
    state["maintenance_set"] = True
    _phase(target, state, "swapped")
    failpoint("restore.after_swap")


def _committed_despite(target: config.Target, state: dict) -> bool:
    """After an error in the swap step: whether the swap committed (then the restore is finished)."""
    if not (state.get("phase") == "swapped" or (state.get("phase") == "swapping" and _swap_committed(target, state))):
        return False
    log.warning("error after the swap committed; finishing the restore", exc_info=True)
    if state["phase"] != "swapped":
        state.setdefault("swap", "committed (confirmed after an error)")
        _phase(target, state, "swapped")
    return True


def _fail_before_swap(target: config.Target, state: dict, exc: BaseException, t0: float) -> None:
    """Nothing live changed: roll back, record the failure, raise (a typed error as it is, else RestoreFailed)."""
    backup_id = state["backup"]
    _rollback(target, state, f"{exc.__class__.__name__}: {exc}")
    duration = time.perf_counter() - t0
    results.record(target.data_dir, "backup.restore", False, backup=backup_id, duration=round(duration, 3),
                   error=str(exc))
    EvidenceLog(target.data_dir).append("backup.restore", {
        "backup": backup_id, "run": state["run"], "into": "live", "result": "rolled_back",
        "error": f"{exc.__class__.__name__}: {exc}", "live_data": "untouched",
        "duration_seconds": round(duration, 3)}, outcome="failed")
    if isinstance(exc, (ControlPlaneError, KeyboardInterrupt)):
        raise exc
    raise RestoreFailed(f"the restore of backup {backup_id} failed before the swap and was rolled "
                        f"back ({exc.__class__.__name__}: {exc}); the live data is untouched",
                        fix="Fix the cause (see the log) and run the restore again.") from exc


def _swap_committed(target: config.Target, state: dict) -> bool:
    with contextlib.suppress(Exception):
        if state["engine"] == "postgresql":
            return _pg_swapped(target, state)
        return _maintenance(f"sqlite:///{state['live_path']}")["reason"] == _swap_marker(state)
    return False


def _restore_into(target: config.Target, repo, backup_id: str, into: Path, progress, scratch_database_url) -> dict:
    """Materialise and verify through L3 into a directory for inspection; nothing live is touched."""
    t0 = time.perf_counter()
    manifest = V._manifest_dict(repo.load_manifest(backup_id))
    backup_id = str(manifest.get("id") or backup_id)
    engine = V._engine_of(manifest)
    into.mkdir(parents=True, exist_ok=True)
    final = into / ("erp.sqlite3" if engine == "sqlite" else "erp.pgdump")
    if final.exists():
        raise RestoreRefused(f"{final} already exists", fix="Choose an empty --target directory.")
    workdir = into / f".erpctl-restore-{secrets.token_hex(4)}"
    ladder = V.Ladder(repo, backup_id, workdir=workdir,
                      server_url=V.scratch_server_url(target, scratch_database_url),
                      field_key=V.default_field_key(target), progress=progress, keep_copy=False)
    try:
        levels = ladder.run(3)
        verification = V.Verification(backup_id, 3, engine, levels, time.perf_counter() - t0)
        if verification.ok:
            if engine == "sqlite":
                scratch.sqlite_close_cleanly(ladder.copy.artifact_path)
            os.replace(ladder.copy.artifact_path, final)
    finally:
        ladder.close()
        shutil.rmtree(workdir, ignore_errors=True)
    V.record_verification(target.data_dir, verification, extra={"for": "restore", "into": str(into)})
    duration = time.perf_counter() - t0
    results.record(target.data_dir, "backup.restore", verification.ok, backup=backup_id,
                   duration=round(duration, 3), into=str(into))
    failed = verification.failed
    EvidenceLog(target.data_dir).append("backup.restore", {
        "backup": backup_id, "into": str(into), "result": "placed" if verification.ok else "refused",
        "path": str(final) if verification.ok else None, "verified_through": verification.passed_level,
        **({"failed_level": failed.level, "failure": failed.summary} if failed else {}),
        "duration_seconds": round(duration, 3)}, outcome="ok" if verification.ok else "refused")
    if not verification.ok:
        raise RestoreRefused(f"backup {backup_id} failed verification at L{failed.level} ({failed.name}): "
                             f"{failed.summary}; nothing was placed in {into}",
                             fix=REFUSED_FIX,
                             verification=verification.as_dict())
    return {"backup": backup_id, "engine": engine, "into": str(into), "path": str(final), "ok": True,
            "duration_seconds": round(duration, 3), "verification": verification.as_dict()}


def restore_test(target: config.Target, repo, backup_id: str, *, level: int = 4, progress=None,
                 scratch_database_url: str | None = None) -> V.Verification:
    """A scheduled restore test: restore into a scratch location and verify through `level` (default L4:
    an ERP serves it); recorded as 'backup.restore_test' when it passes."""
    t0 = time.perf_counter()
    v = V.verify_backup(repo, backup_id, level, target=target, scratch_database_url=scratch_database_url,
                        progress=progress, record=True)
    record_restore_test(target, v, time.perf_counter() - t0)
    return v


# A verification through this level restores the backup into a scratch database and compares its
# content: run by hand (erpctl backup verify --level 3 or 4), it counts as a restore test.
RESTORE_TEST_MIN_LEVEL = 3


def record_restore_test(target: config.Target, v: V.Verification, duration: float) -> None:
    """Record a restore test (results 'backup.restore_test', the evidence log): the scheduled one, or a
    verification through RESTORE_TEST_MIN_LEVEL or more of the target's own backup."""
    level = v.requested_level
    results.record(target.data_dir, "backup.restore_test", v.ok, backup=v.backup, duration=round(duration, 3),
                   level=level, passed_level=v.passed_level)
    EvidenceLog(target.data_dir).append("backup.restore_test", {
        "backup": v.backup, "level": level, "passed_level": v.passed_level, "ok": v.ok,
        "duration_seconds": round(duration, 3), **({"failure": v.failed.summary} if v.failed else {})},
        outcome="ok" if v.ok else "failed")
