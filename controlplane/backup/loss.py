"""What an in-place restore discards, and the numbers it must not hand out again.

An in-place restore puts the database back to the backup: every write made since is gone. Before
the swap, with the live ERP read-only (so the list is exact), the restore

- lists the writes the live database has and the verified copy lacks, from the audit log
  (erp_core.ops.writes_since): kind (table), id, document number, action, user, time; refuses unless
  the operator named their count (--discard-writes N); the full list goes to
  <data dir>/restores/<run>-discarded.json for the business, its sha256 into the evidence record;
- reads what the live database has handed out (erp_core.ops.numbering_floors: the last number of
  each document series, the last id of each table or sequence) and raises the copy to at least
  that (erp_core.ops.raise_numbering) before it is swapped in, so no order id or document number
  a customer may hold is handed out again.

A restore repairs damage, so it is never refused for it: what the live database cannot give (a
damaged audit log, a table whose last id cannot be read, a file cut short, no ERP schema at all) is
left out, named in "unreadable" (the list, the loss window, the evidence record), and the writes since
the backup, when they cannot be counted, are confirmed by any --discard-writes.

Operator switches (maintenance mode, the system_settings table) and sessions (logins, logouts:
allowed in maintenance mode, the count would never hold) are not business writes and are left out of
the list; tokens issued since the backup are gone with it (their users log in again).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from erp_core import ops

from .. import config, layout
from ..errors import RestoreFailed, WritesWouldBeDiscarded
from ..fsutil import atomic_write_text, fsync_dir
from . import scratch

log = logging.getLogger("controlplane.backup.loss")

NOT_BUSINESS = {"exclude_entities": ("system_settings",), "exclude_actions": ("login", "logout", "login_failed")}
LIST_VERSION = 1
DRAIN_TIMEOUT = 30.0
ANY = "any"  # discard_writes of a caller that had the loss accepted already (an upgrade rollback)


@contextlib.contextmanager
def _engine(url: str):
    engine = ops.make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _by_kind(lost: dict) -> dict[str, int]:
    return {f"{g['entity']} {g['action']}": g["count"] for g in lost["groups"]}


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {(str(orig).strip().splitlines() or [''])[0][:200]}"


def _unknown(what: str, exc: BaseException) -> dict:
    """The writes since the backup when the live database's audit log cannot be read (the damage the
    restore repairs, a file cut short): not counted, and said so."""
    log.warning("the live database cannot be read for the loss report", extra={"what": what, "error": _reason(exc)})
    return {"count": None, "entries": [], "groups": [], "first_at": None, "last_at": None,
            "unreadable": [f"{what}: {_reason(exc)}"]}


def since_backup(target: config.Target, manifest: dict, limit: int | None = None) -> dict:
    """The writes of the live database made after the backup, as of now (they keep growing while the
    ERP takes writes): after the audit-log rows the backup holds, or after its time. A live database
    whose audit log cannot be read gives count None and says why in "unreadable"."""
    rows = ((manifest.get("tables") or {}).get("audit_log") or {}).get("rows")
    point = {"audit_rows": int(rows)} if rows is not None else {"at": dt.datetime.fromisoformat(manifest["created_at"])}
    try:
        with _engine(target.database_url) as engine:
            lost = {**ops.writes_since(engine, **point, **NOT_BUSINESS, limit=limit), "unreadable": []}
    except (SQLAlchemyError, sqlite3.Error) as exc:
        lost = _unknown("the audit log (the writes made since the backup)", exc)
    return {**lost, "backup": manifest["id"], "backup_time": manifest["created_at"], "by_kind": _by_kind(lost)}


def confirm(found: dict, discard_writes, backup_id: str, *, exact: bool) -> None:
    """Refuse (WritesWouldBeDiscarded) unless the operator named the number of writes found. Before the
    ERP is read-only (`exact` false) the count only grows, so only a count above the named one refuses."""
    n = found["count"]
    if n is None:  # the live database cannot be read: any number the operator names confirms the loss
        if discard_writes is not None:
            return
        raise WritesWouldBeDiscarded(
            f"restoring backup {backup_id[:8]} ({found.get('backup_time')}) in place discards every write made since "
            f"it, and they cannot be counted: the live database cannot be read ({'; '.join(found['unreadable'])}); "
            "nothing was changed",
            fix=f"Keep a copy of the damaged database for the analysis (the DatabaseCorrupted runbook), then restore "
                f"with '--discard-writes 0' to confirm the loss: 'erpctl backup restore {backup_id[:12]} --yes "
                "--discard-writes 0'.", found=None)
    if discard_writes == ANY or n == (discard_writes or 0) or (not exact and n < (discard_writes or 0)):
        return
    kinds = ", ".join(f"{c} {k}" for k, c in list(found["by_kind"].items())[:6])
    said = ("without --discard-writes" if discard_writes is None
            else f"--discard-writes {discard_writes} does not match")
    raise WritesWouldBeDiscarded(
        f"restoring backup {backup_id[:8]} ({found.get('backup_time')}) in place discards {n} write(s) made since "
        f"it{' (' + kinds + ')' if kinds else ''}: {said}; nothing was changed",
        fix=f"List them: 'erpctl backup restore {backup_id[:12]} --dry-run' (switch the ERP to maintenance first, "
            f"'erpctl erp maintenance on', so the count holds); agree the loss with the business, then restore with "
            f"'--discard-writes {n}'.", found=n)


def pg_drain(target: config.Target) -> None:
    """PostgreSQL: wait until every transaction on the live database that began before maintenance was
    switched on has ended (one that checked the switch before it may still commit writes)."""
    live = make_url(target.database_url).database
    with scratch.pg_admin(target.database_url) as c:
        since = c.execute(text("SELECT clock_timestamp()")).scalar()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid() "
                             "AND xact_start < :t"), {"n": live, "t": since}).scalar():
            if time.monotonic() > deadline:
                raise RestoreFailed(f"transactions on {live} begun before maintenance mode did not end within "
                                    f"{DRAIN_TIMEOUT:.0f} s",
                                    fix="Find them in pg_stat_activity, then run the restore again.")
            time.sleep(0.1)


def account(target: config.Target, state: dict, manifest: dict, copy_url: str, discard_writes) -> dict:
    """With the live ERP read-only: list the writes the copy lacks (refuse unless confirmed), keep the
    list for the business, and raise the copy's numbering to the live database's. The loss window
    for the state and the evidence record."""
    if state["engine"] == "postgresql":
        pg_drain(target)
    with _engine(target.database_url) as live, _engine(copy_url) as copy:
        try:
            lost = {**ops.writes_since(live, not_in=copy, **NOT_BUSINESS, limit=None), "unreadable": []}
        except (SQLAlchemyError, sqlite3.Error) as exc:
            lost = _unknown("the audit log (the writes made since the backup)", exc)
        try:
            floors = ops.numbering_floors(live)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            log.warning("the live database's numbering cannot be read", extra={"error": _reason(exc)})
            floors = {"series": {}, "ids": {}, "unreadable": [f"the numbering (ids and document numbers handed "
                                                              f"out): {_reason(exc)}"]}
    unreadable = [*(state.get("live_unreadable") or []), *lost["unreadable"], *floors["unreadable"]]
    found = {**lost, "backup_time": manifest["created_at"], "by_kind": _by_kind(lost)}
    confirm(found, discard_writes, state["backup"], exact=True)
    restore_time = dt.datetime.now(dt.UTC).isoformat()
    listing = {"version": LIST_VERSION, "backup": state["backup"], "backup_time": manifest["created_at"],
               "restore_run": state["run"], "restore_time": restore_time, "database": target.display_url,
               "count": lost["count"], "by_kind": found["by_kind"], "first_at": lost["first_at"],
               "last_at": lost["last_at"], "unreadable": unreadable, "writes": lost["entries"]}
    body = json.dumps(listing, indent=1, default=str) + "\n"
    path = layout.path(target.data_dir, "restore_discarded", run=state["run"])
    pending = Path(state["workdir"]) / path.name  # published by publish() once the swap committed
    pending.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(pending, body)
    raised = ops.raise_numbering(copy_url, floors)
    return {"backup_time": manifest["created_at"], "restore_time": restore_time, "discarded": lost["count"],
            "by_kind": found["by_kind"], "first_at": lost["first_at"], "last_at": lost["last_at"],
            "list_file": str(path), "list_sha256": hashlib.sha256(body.encode()).hexdigest(),
            "numbering_floors": {"series": floors["series"], "ids": floors["ids"]}, "numbering_raised": raised,
            "unreadable": unreadable}


def publish(state: dict) -> None:
    """The swap committed: the list of what it discarded goes where the business gets it (again after a
    crash: the next run finishes the restore through here)."""
    final = Path((state.get("loss") or {}).get("list_file") or "")
    if not final.name:
        return
    pending = Path(state["workdir"]) / final.name
    if pending.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(pending, final)
        fsync_dir(final.parent)
