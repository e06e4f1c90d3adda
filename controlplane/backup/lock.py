"""The repository lock: lock objects under locks/, shared (backup, check, restore) or exclusive (prune).

Taking a lock writes one's own lock object, then lists the others: a conflicting live lock makes
the taker remove its own and wait (or give up with RepositoryLocked); two takers racing both see
each other and both back off, so they never both proceed. A lock names its owner, host, pid (and
the process's start time), carries a heartbeat refreshed by a thread and an expiry; a lock whose
process is gone on this host, or whose heartbeat expired, is stale and taken over.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import random
import secrets
import socket
import threading
import time

import psutil

from ..errors import RepositoryLocked
from .store import NotFound

log = logging.getLogger("controlplane.backup.lock")

HEARTBEAT_SECONDS = float(os.environ.get("ERPCTL_BACKUP_LOCK_HEARTBEAT", "30"))
EXPIRY_SECONDS = float(os.environ.get("ERPCTL_BACKUP_LOCK_EXPIRY", "300"))


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return str(os.getuid())


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def is_stale(info: dict, now: float | None = None) -> str | None:
    """Why a lock is stale (its process is gone on this host, or its heartbeat expired), else None."""
    now = now or time.time()
    if info.get("host") == socket.gethostname():
        pid = int(info.get("pid", 0))
        start = _process_start(pid) if pid > 0 else None
        if start is None:
            return f"its process {pid} on this host is gone"
        if info.get("pid_start") and abs(start - float(info["pid_start"])) > 1.0:
            return f"its process {pid} on this host is gone (the pid was reused)"
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return f"its process {pid} on this host has exited"
    if float(info.get("expires", 0)) < now:
        return f"its heartbeat expired at {_iso(float(info.get('expires', 0)))}"
    return None


class Lock:
    def __init__(self, store, operation: str, exclusive: bool):
        self.store = store
        self.operation = operation
        self.exclusive = exclusive
        self.id = f"{int(time.time() * 1000):013d}-{secrets.token_hex(6)}"
        self.key = f"locks/{self.id}"
        self.created = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def info(self) -> dict:
        now = time.time()
        pid = os.getpid()
        return {"id": self.id, "operation": self.operation, "exclusive": self.exclusive, "owner": _user(),
                "host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
                "created": self.created, "created_at": _iso(self.created), "heartbeat": now,
                "expires": now + EXPIRY_SECONDS}

    def _write(self) -> None:
        self.store.put(self.key, json.dumps(self.info()).encode())

    def others(self) -> list[dict]:
        out = []
        for obj in self.store.list("locks/"):
            if obj.key == self.key:
                continue
            try:
                info = json.loads(self.store.get(obj.key))
            except NotFound:
                continue
            except ValueError:
                info = {"id": obj.key, "operation": "?", "exclusive": True, "host": "?", "pid": 0,
                        "expires": obj.mtime + EXPIRY_SECONDS}
            info["_key"] = obj.key
            out.append(info)
        return out

    def acquire(self, wait: float = 0.0) -> Lock:
        deadline = time.monotonic() + wait
        while True:
            self._write()
            conflicts = []
            for other in self.others():
                why = is_stale(other)
                if why:
                    log.warning("removing a stale repository lock", extra={
                        "lock": other.get("id"), "operation": other.get("operation"), "host": other.get("host"),
                        "pid": other.get("pid"), "reason": why})
                    self.store.delete(other["_key"])
                    continue
                if self.exclusive or other.get("exclusive"):
                    conflicts.append(other)
            if not conflicts:
                self.held = True
                self._thread = threading.Thread(target=self._beat, name="backup-lock-heartbeat", daemon=True)
                self._thread.start()
                return self
            self.store.delete(self.key)
            if time.monotonic() >= deadline:
                c = conflicts[0]
                raise RepositoryLocked(
                    f"the backup repository is locked by {'an exclusive' if c.get('exclusive') else 'a'} "
                    f"{c.get('operation')!s} run of {c.get('owner', '?')} on {c.get('host')} (pid {c.get('pid')}, "
                    f"since {c.get('created_at', '?')})",
                    fix="Wait for that run to finish and run again (or pass a longer --lock-wait). A lock of a "
                        "process that died is taken over automatically (on another host once its heartbeat "
                        "expires).", holders=[{k: v for k, v in x.items() if not k.startswith("_")}
                                              for x in conflicts])
            time.sleep(min(max(0.0, deadline - time.monotonic()), random.uniform(0.2, 1.0)))

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._write()
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat is retried; expiry is long
                log.warning("could not refresh the repository lock", extra={"error": str(exc)})

    def check(self) -> None:
        """Still ours? (Before publishing: a lock taken over as stale means another run may act.)"""
        try:
            info = json.loads(self.store.get(self.key))
        except NotFound:
            raise RepositoryLocked("this run's repository lock was removed by another run (taken as stale)",
                                   fix="Nothing was published; run again.") from None
        if info.get("pid") != os.getpid():
            raise RepositoryLocked("this run's repository lock was replaced", fix="Run again.")
        self._write()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held:
            try:
                self.store.delete(self.key)
            except Exception as exc:  # noqa: BLE001 - a leftover lock is stale once this process ends
                log.warning("could not remove the repository lock", extra={"error": str(exc)})
            self.held = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
