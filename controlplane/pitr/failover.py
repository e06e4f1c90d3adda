"""Failover to a streaming standby: the replication lag measured, the standby promoted, the old primary
fenced, the app hosts repointed, the loss window reported.

The database hosts are the inventory's `database` group; each says how to reach its PostgreSQL
(`pg_port` (5432), `pg_user` (postgres), `pg_database` (erp), `pg_application_name` (the host's name:
what the standby calls itself in primary_conninfo)), its role (`pg_role: primary | standby`) and,
for a host erpctl may stop (`ansible_connection: local`), `pg_data`. After a failover the promoted
host is the primary (fleet/failover.json), whatever pg_role says, until the inventory is updated.

What can be lost, measured, not guessed:
    the check ('erpctl fleet failover --check', or at promotion when the old primary still answers)
    reads the primary's pg_current_wal_lsn() and next transaction id, and the standby's replay LSN and
    next transaction id: lag_bytes and lag_transactions are the WAL and the transactions the standby
    had not replayed. With the standby synchronous (its sync_state 'sync' or 'quorum' and
    synchronous_commit on or remote_apply) no acknowledged commit can be lost: the primary only
    acknowledges a commit once the standby has flushed it. Asynchronous, up to lag_transactions
    acknowledged commits (lag_bytes of WAL) may be lost; when the primary is already gone, the last
    check's figures are reported with their age.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import psycopg

from .. import layout, results
from ..errors import FailoverFailed, FailoverRefused, FleetError, PitrError
from ..evidence import EvidenceLog
from ..fsutil import atomic_write_text
from ..remote import fleet, inventory
from ..remote.inventory import Host
from . import cluster, repoint

SAFE_COMMIT = ("on", "remote_apply")
CATCH_UP_SECONDS = 10.0


def conninfo(h: Host, timeout: float = 5) -> dict:
    return {"host": h.address, "port": int(h.vars.get("pg_port") or 5432), "user": str(h.vars.get("pg_user") or
            "postgres"), "dbname": str(h.vars.get("pg_database") or "erp"), "connect_timeout": max(1, int(timeout))}


def _q(h: Host, sql: str, params=None, timeout: float = 5) -> list[tuple]:
    info = conninfo(h, timeout)
    with psycopg.connect(**info, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _answers(h: Host) -> bool:
    try:
        _q(h, "SELECT 1", timeout=3)
        return True
    except psycopg.Error:
        return False


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _state(data_dir) -> dict:
    try:
        return json.loads(layout.path(data_dir, "failover").read_text())
    except (FileNotFoundError, ValueError):
        return {"version": 1}


def _save(data_dir, state: dict) -> None:
    path = layout.path(data_dir, "failover")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state, indent=2, default=str) + "\n")


def pair(inst, standby: str | None) -> tuple[Host, Host]:
    """(primary, standby) among the inventory's database hosts."""
    dbs = [h for h in inventory.load(inst.get("fleet_inventory")) if "database" in h.groups]
    names = {h.name: h for h in dbs}
    recorded = _state(inst.data_dir).get("primary")
    primary = names.get(recorded) or next((h for h in dbs if h.vars.get("pg_role") == "primary"), None)
    if primary is None:
        raise FleetError("the inventory names no primary database host",
                         fix="Give one host of the database group pg_role: primary (docs/pitr.md).")
    if standby is not None and standby not in names:
        raise FleetError(f"--standby {standby!r} is not a host of the inventory's database group",
                         fix="'erpctl fleet status --limit database' lists them.")
    chosen = names.get(standby) if standby else next((h for h in dbs if h.name != primary.name and (
        h.vars.get("pg_role") == "standby" or h.name != recorded)), None)
    if chosen is None or chosen.name == primary.name:
        raise FleetError("the inventory names no standby database host besides the primary",
                         fix="Give the standby pg_role: standby, or name it with --standby.")
    return primary, chosen


def _snapshot_next(text: str) -> int:
    return int(str(text).split(":")[1])


def measure(primary: Host, standby: Host) -> dict:
    """The lag of `standby` behind `primary`, now (both must answer)."""
    lsn, nxt, names, commit = _q(primary, "SELECT pg_current_wal_lsn()::text, pg_current_snapshot()::text, "
                                          "current_setting('synchronous_standby_names'), "
                                          "current_setting('synchronous_commit')")[0]
    app = str(standby.vars.get("pg_application_name") or standby.name)
    reps = _q(primary, "SELECT application_name, state, sync_state FROM pg_stat_replication")
    row = next((r for r in reps if r[0] == app), reps[0] if len(reps) == 1 else None)
    in_rec, replay, s_next = _q(standby, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                                         "pg_current_snapshot()::text")[0]
    sync_state = row[2] if row else None
    synchronous = sync_state in ("sync", "quorum") and commit in SAFE_COMMIT
    lag_bytes = max(0, cluster.lsn(lsn) - (cluster.lsn(replay) or 0))
    return {"at": _now(), "primary": primary.name, "standby": standby.name, "primary_lsn": lsn,
            "standby_replay_lsn": replay, "standby_in_recovery": in_rec,
            "streaming": bool(row and row[1] == "streaming"),
            "sync_state": sync_state, "synchronous_standby_names": names, "synchronous_commit": commit,
            "synchronous": synchronous, "lag_bytes": lag_bytes,
            "lag_transactions": max(0, _snapshot_next(nxt) - _snapshot_next(s_next)),
            "acknowledged_writes_at_risk": 0 if synchronous else None}


def check(inst, standby: str | None = None) -> dict:
    """Measure and record the lag (the figure a failover reports when the primary is gone by then)."""
    primary, stand = pair(inst, standby)
    for h in (primary, stand):
        if not _answers(h):
            raise FailoverFailed(f"database host {h.name} ({h.address}:{conninfo(h)['port']}) does not answer",
                                 fix="Bring it back, or check the inventory's pg_port.")
    m = measure(primary, stand)
    if not m["synchronous"]:
        m["acknowledged_writes_at_risk"] = m["lag_transactions"]
    state = _state(inst.data_dir)
    state["last_check"] = m
    _save(inst.data_dir, state)
    results.record(inst.data_dir, "fleet.replication", True, lag_bytes=m["lag_bytes"],
                   lag_transactions=m["lag_transactions"], synchronous=m["synchronous"])
    return m


# ---- the failover ---------------------------------------------------------------------------------

def _fence(primary: Host, standby: Host) -> dict:
    """Stop the old primary taking writes: read-only for every new transaction, its client sessions
    ended; then the standby given a moment to replay what it wrote; then stopped if it is local."""
    _q(primary, "ALTER SYSTEM SET default_transaction_read_only = on")
    _q(primary, "SELECT pg_reload_conf()")
    _q(primary, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()")
    target = cluster.lsn(_q(primary, "SELECT pg_current_wal_lsn()::text")[0][0])
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while time.monotonic() < deadline:
        if (cluster.lsn(_q(standby, "SELECT pg_last_wal_replay_lsn()::text")[0][0]) or 0) >= target:
            break
        time.sleep(0.1)
    measured = measure(primary, standby)
    how = "read-only (default_transaction_read_only), sessions ended"
    data = primary.vars.get("pg_data")
    if primary.vars.get("ansible_connection") == "local" and data and Path(data).exists():
        version = int(_q(primary, "SHOW server_version_num")[0][0])
        pg_bin = cluster.bin_dir(primary.vars.get("pg_bin"), version)
        if cluster.stop(pg_bin, Path(data), cluster.owner(data), mode="fast"):
            how = "stopped (pg_ctl stop -m fast) after read-only"
    return {"fence": how, "at_promotion": measured}


def _promote(standby: Host, timeout: float) -> dict:
    t0 = time.monotonic()
    try:
        _q(standby, "SELECT pg_promote(true, %s)", (int(timeout),), timeout=timeout + 5)
        cluster.wait_out_of_recovery({k: v for k, v in conninfo(standby).items() if k != "connect_timeout"}, timeout)
    except (psycopg.Error, PitrError) as exc:
        raise FailoverFailed(f"standby {standby.name} was not promoted: {exc}",
                             fix="Look at its PostgreSQL log; promote it by hand (pg_ctl promote) if it must.") \
            from None
    promoted = time.monotonic() - t0
    cleared = False
    if _q(standby, "SELECT current_setting('synchronous_standby_names')")[0][0]:
        # its configuration came from the old primary: with no standby of its own, commits would wait forever
        _q(standby, "ALTER SYSTEM SET synchronous_standby_names = ''")
        _q(standby, "SELECT pg_reload_conf()")
        cleared = True
    while time.monotonic() - t0 < timeout:
        try:
            with psycopg.connect(**conninfo(standby), autocommit=False) as conn:
                conn.execute("SELECT pg_current_xact_id()")  # a transaction id assigned and committed: a write
                conn.commit()
            break
        except psycopg.Error:
            time.sleep(0.05)
    else:
        raise FailoverFailed(f"standby {standby.name} was promoted but took no write within {timeout:.0f}s",
                             fix="Look at its PostgreSQL log (disk full? read-only?).")
    return {"promote_seconds": round(promoted, 3), "first_write_seconds": round(time.monotonic() - t0, 3),
            "synchronous_standby_names_cleared": cleared}


def _loss(fenced: dict | None, last: dict | None, standby: Host) -> dict:
    if fenced is not None:
        m = fenced["at_promotion"]
        return {"measured": "at promotion", "synchronous": m["synchronous"], "lag_bytes": m["lag_bytes"],
                "lag_transactions": m["lag_transactions"],
                "acknowledged_writes_lost": 0 if m["synchronous"] or m["lag_transactions"] == 0 else None,
                "acknowledged_writes_at_risk": 0 if m["synchronous"] else m["lag_transactions"]}
    if not last or last.get("standby") != standby.name:
        return {"measured": "never (no check of this pair: run 'erpctl fleet failover --check' on a schedule)",
                "synchronous": None, "lag_bytes": None, "lag_transactions": None,
                "acknowledged_writes_lost": None, "acknowledged_writes_at_risk": None}
    age = time.time() - dt.datetime.fromisoformat(last["at"]).timestamp()
    return {"measured": f"at the last check, {age:.0f}s before the failover", "checked_at": last["at"],
            "synchronous": last["synchronous"], "lag_bytes": last["lag_bytes"],
            "lag_transactions": last["lag_transactions"],
            "acknowledged_writes_lost": 0 if last["synchronous"] else None,
            "acknowledged_writes_at_risk": 0 if last["synchronous"] else last["lag_transactions"]}


def failover(inst, standby: str | None = None, force: bool = False, timeout: float = 120.0) -> dict:
    primary, stand = pair(inst, standby)
    if not _answers(stand):
        raise FailoverFailed(f"standby {stand.name} ({stand.address}:{conninfo(stand)['port']}) does not answer",
                             fix="Start it; check the inventory's pg_port.")
    if not _q(stand, "SELECT pg_is_in_recovery()")[0][0]:
        raise FailoverFailed(f"{stand.name} is not a standby (it is out of recovery already)",
                             fix="Name the standby with --standby; 'erpctl fleet failover --check' shows the pair.")
    alive = _answers(primary)
    fenced = None
    if alive and not force:
        m = measure(primary, stand)
        raise FailoverRefused(f"the primary {primary.name} still answers: promoting {stand.name} would make two "
                              f"primaries (standby {m['lag_bytes']} bytes, {m['lag_transactions']} transaction(s) "
                              "behind)", fix="Stop the primary first, or pass --force: erpctl fences it (read-only, "
                                             "sessions ended, stopped when local) before promoting.")
    t0 = time.monotonic()
    if alive:
        fenced = _fence(primary, stand)
    last = _state(inst.data_dir).get("last_check")
    loss = _loss(fenced, last, stand)
    promoted = _promote(stand, timeout)
    app_hosts = [h for h in inventory.load(inst.get("fleet_inventory")) if "app" in h.groups]
    info = conninfo(stand)
    access = fleet.access(inst) if any(h.vars.get("ansible_connection") != "local" for h in app_hosts) else None
    repointed = [repoint.repoint(h, stand.address, info["port"], info["user"], info["dbname"], access)
                 for h in app_hosts]
    out = {"old_primary": primary.name, "new_primary": stand.name, "old_primary_answered": alive,
           "fence": fenced["fence"] if fenced else "none needed: it did not answer", **promoted,
           "failover_seconds": round(time.monotonic() - t0, 3), "loss": loss, "app_hosts": repointed,
           "ok": all(r["outcome"] == "repointed" for r in repointed)}
    state = _state(inst.data_dir)
    state.update(primary=stand.name, last_failover={"at": _now(), **out})
    _save(inst.data_dir, state)
    EvidenceLog(inst.data_dir).append("fleet.failover", out, outcome="ok" if out["ok"] else "failed")
    return out
