"""Administering the ERP's database through its operator interface (erp_core.ops): migrations and
their stages, users, demo data, the business invariants and the maintenance switch.

Each function takes a Target (controlplane.config), does one job and returns plain data for the
CLI or the console to render; failures are typed errors (erp_core.errors, controlplane.errors).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from erp_core import ops
from erp_core.errors import SchemaMismatch

from . import config, permissions
from .config import Target
from .errors import database_error

log = logging.getLogger("controlplane.erp")


def require_database(target: Target) -> None:
    """An embedded database must exist before anything but `migrate` or `up` touches it
    (otherwise SQLite would quietly create an empty file)."""
    path = target.sqlite_path
    if path is not None and not path.exists():
        raise SchemaMismatch(f"there is no ERP database at {path}",
                             fix="Create it with 'erpctl erp migrate' (or 'erpctl up') on the same --data-dir.")


def check_schema(engine, target: Target, *, any_migrated: bool = False):
    """The schema's status; SchemaMismatch unless this code supports it (any_migrated: unless it is not
    migrated at all, for what every schema since the first migration has, like the maintenance switch)."""
    status = ops.schema_status(engine)
    if status.current is None if any_migrated else not status.supported:
        _refuse_schema(status)
    return status


def _refuse_schema(status) -> None:
    raise SchemaMismatch(f"the database schema is not supported: {status.reason}",
                         fix="Run 'erpctl erp migrate' when the schema is older; upgrade erpctl when the "
                             "database was migrated by a newer version.", schema=status.as_dict())


@contextlib.contextmanager
def open_database(target: Target, *, any_migrated: bool = False):
    """A Database on a migrated, supported schema (any_migrated: on any migrated one), disposed afterwards."""
    from sqlalchemy.exc import OperationalError

    require_database(target)
    db = ops.Database(target.database_url)
    try:
        check_schema(db.engine, target, any_migrated=any_migrated)
        yield db
    except OperationalError as exc:
        raise database_error(exc, target.sqlite_path) from exc
    finally:
        db.dispose()


def _sqlite_maintenance(target: Target) -> dict:
    """The switch of an SQLite database read as open_database would (refusing what it refuses), through
    the standard library: `erpctl erp maintenance status` loads no SQLAlchemy (~250 ms)."""
    import sqlite3

    require_database(target)
    try:
        status, state = ops.sqlite_maintenance(target.sqlite_path)
    except sqlite3.Error as exc:
        raise database_error(exc, target.sqlite_path) from exc
    if state is None:
        _refuse_schema(status)
    return state


# ---- migrations -------------------------------------------------------------------------------

def migrate_database(target: Target) -> dict:
    """Upgrade the schema to the code's head; report the revisions and every migration's stage."""
    if target.sqlite_path is not None:
        config.ensure_data_dir(target)
    permissions.tighten(target.data_dir)
    known = ops.known_migrations()
    order = [m["revision"] for m in known]
    engine = ops.make_engine(target.database_url)
    try:
        before = ops.current_revision(engine)
        if before is not None and before not in order:
            status = ops.schema_status(engine)  # the database is ahead of this code
            if not status.supported:
                check_schema(engine, target)
            after = before
            note = status.reason
        else:
            after, note = None, ""
    finally:
        engine.dispose()
    if after is None:
        t0 = time.perf_counter()
        after = ops.migrate(target.database_url)
        note = "already at the code's revision" if after == before else "migrated"
        if after == ops.code_head():
            built = ops.complete_period_balances(target.database_url)
            if built is not None:
                log.info("built the ledger period balances", extra={"balances": built})
        log.info("migrated the database", extra={"database": target.display_url, "from_revision": before,
                                                  "to_revision": after,
                                                  "seconds": round(time.perf_counter() - t0, 3)})
        permissions.tighten(target.data_dir)  # the database file it may have created
    if before is not None and before not in order:  # ahead of this code: all it knows is applied
        start = end = len(order)
    else:
        start = order.index(before) + 1 if before in order else 0
        end = order.index(after) + 1 if after in order else len(order)
    migrations = []
    for i, m in enumerate(known):
        if start <= i < end:
            state = "applied now"
        elif i < start:
            state = "already applied"
        else:
            state = "pending"
        migrations.append({"revision": m["revision"], "stage": m["stage"], "doc": m["doc"], "state": state})
    return {"database": target.display_url, "from_revision": before, "to_revision": after,
            "code_head": order[-1] if order else None, "note": note, "migrations": migrations}


# ---- users ------------------------------------------------------------------------------------

def add_user(target: Target, username: str, password: str, role: str, full_name: str = "",
             service: bool = False) -> dict:
    with open_database(target) as db, db.session(actor="erpctl") as s:
        user = ops.create_user(s, username, password, role, full_name=full_name, service=service)
        return {**{k: user[k] for k in ("id", "username", "role", "full_name")}, "service": service}


USER_EVIDENCE = "erp.user"  # the evidence record of an operator's change to an ERP user


def _user_evidence(target: Target, action: str, username: str, **facts) -> None:
    if Path(target.data_dir).is_dir():
        from .evidence import EvidenceLog

        EvidenceLog(target.data_dir).append(f"{USER_EVIDENCE}.{action}", {
            "database": target.display_url, "username": username, **facts})


def list_users(target: Target) -> list[dict]:
    with open_database(target) as db, db.session(write=False, actor="erpctl") as s:
        return ops.list_users(s)


def reset_password(target: Target, username: str, password: str | None) -> dict:
    """The temporary password (never in the evidence log) and the sessions ended."""
    with open_database(target) as db, db.session(actor="erpctl") as s:
        result = ops.reset_password(s, username, password)
    _user_evidence(target, "passwd", username, sessions_ended=result["sessions_ended"],
                   generated=password is None)
    return result


def set_service_password(target: Target, username: str, password: str) -> dict:
    """A service user's new password (a rotation: no change asked at its next login); its tokens revoked.
    People get a temporary one instead ('passwd' without --service). Any migrated schema: a release serving
    an older one (release 1.0, mid-way through a staged upgrade) keeps its probe's password rotated too."""
    with open_database(target, any_migrated=True) as db, db.session(actor="erpctl") as s:
        ops.set_password(s, username, password)
    _user_evidence(target, "passwd", username, service=True, generated=False)
    return {"username": username, "service": True, "rotated": True}


def logout_user(target: Target, username: str) -> dict:
    with open_database(target) as db, db.session(actor="erpctl") as s:
        result = ops.logout_user(s, username)
    _user_evidence(target, "logout", username, sessions_ended=result["sessions_ended"])
    return result


def deactivate_user(target: Target, username: str) -> dict:
    with open_database(target) as db, db.session(actor="erpctl") as s:
        user = ops.deactivate_user(s, username)
    _user_evidence(target, "deactivate", username)
    return {k: user[k] for k in ("id", "username", "role", "active")}


def mfa_reset(target: Target, username: str) -> dict:
    """The user's multi-factor login removed (in the ERP's audit log and the evidence log)."""
    with open_database(target) as db, db.session(actor="erpctl") as s:
        result = ops.mfa_reset(s, username)
    _user_evidence(target, "mfa-reset", username, reset=result["reset"])
    return result


# ---- demo data --------------------------------------------------------------------------------

def seed(target: Target, scale: int, rng_seed: int = 1, progress=None) -> dict:
    """Demo data of the given scale (see erp_core.seed), encrypted with the installation's key;
    progress(phase, done, total) hears of the work as it goes."""
    with open_database(target) as db, ops.field_key(config.field_key(target, create=True)):
        t0 = time.perf_counter()
        counts = ops.seed(db, scale, rng_seed, progress=progress)
        seconds = round(time.perf_counter() - t0, 2)
    log.info("seeded demo data", extra={"scale": scale, "seconds": seconds})
    return {"scale": scale, "seconds": seconds, "created": counts}


# ---- invariants -------------------------------------------------------------------------------

INVARIANTS_KEY = "invariants"  # results: the latest check, scheduled or by hand (erpctl_invariant_violations)


def record_check(target: Target, result: dict) -> None:
    """Record a check's outcome in the data directory, so that the exporter, `erpctl status` and the
    InvariantViolations alert see it at once (whether the scheduler or an operator ran it)."""
    from . import results

    if not Path(target.data_dir).is_dir():
        return  # a database checked from elsewhere: no installation to tell
    violations = result["violations"]
    results.record(target.data_dir, INVARIANTS_KEY, result["ok"], violations=len(violations),
                   duration=result["seconds"], first=violations[:10])


def check(target: Target) -> dict:
    """Run every business invariant; `violations` is empty when the database is consistent. When an
    installed release other than this erpctl's serves the ERP, its own code checks (its schema may
    be one this code no longer runs on)."""
    from . import release  # here: ~60 ms of start-up (python -X importtime) that only erp check needs

    current = release.current(target)
    if current is not None and current.version != ops.__version__:
        return release.check_invariants(target, current, config.field_key(target, create=False))
    with open_database(target) as db:
        return ops.check_invariants(db.engine).as_dict()


# ---- maintenance ------------------------------------------------------------------------------

def set_maintenance(target: Target, enabled: bool | None, reason: str = "", retry_after: int | None = None) -> dict:
    """Switch the ERP's read-only mode on or off (None: only report it); refused writes say Retry-After:
    `retry_after` seconds (None: the ERP's default, 60). On any migrated schema: an operator switches it
    on an older or mid-upgrade schema too, as the upgrade engine does."""
    if enabled is None and target.sqlite_path is not None:
        return _sqlite_maintenance(target)
    with open_database(target, any_migrated=True) as db, db.session(write=enabled is not None, actor="erpctl") as s:
        if enabled is None:
            return ops.maintenance_state(s)
        state = ops.set_maintenance(s, enabled, reason, retry_after=retry_after)
    log.info("maintenance mode switched", extra={"enabled": state["enabled"], "reason": state["reason"]})
    return state


# ---- repairs ----------------------------------------------------------------------------------

STOCK_CACHE_CHECK = "on_hand_matches_moves"  # the invariant the stock-cache rebuild repairs
STOCK_CACHE_EVIDENCE = "erp.repair.stock_cache"  # the evidence record of an applied rebuild
EVIDENCE_LISTED = 100  # corrections listed in it (all of them are in the ERP's audit log)


def repair_stock_cache(target: Target, *, apply: bool) -> dict:
    """The on-hand cache rebuilt from the done stock moves (erp_core.ops.repair_stock_cache). Without
    apply only read. With apply: one transaction, refused unless the ERP is in maintenance mode; then an
    evidence record (count, digest, the corrections) and the invariants checked again with their result
    recorded, so the InvariantViolations alert resolves as soon as they hold ({..., "check": result})."""
    with open_database(target) as db, db.session(write=apply, actor="erpctl") as s:
        result = ops.repair_stock_cache(s, apply=apply)
    if not apply:
        return result
    log.info("stock cache rebuilt", extra={"corrections": result["count"], "digest": result["digest"]})
    if Path(target.data_dir).is_dir():
        from .evidence import EvidenceLog

        EvidenceLog(target.data_dir).append(STOCK_CACHE_EVIDENCE, {
            "database": target.display_url, "count": result["count"], "digest": result["digest"],
            "corrections": result["corrections"][:EVIDENCE_LISTED],
            "listed": min(result["count"], EVIDENCE_LISTED)})
    after = check(target)
    record_check(target, after)
    return {**result, "check": after}
