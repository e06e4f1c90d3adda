"""Serving the current release under `erpctl up`: one child ERP on a fixed port, restarted with a
back-off when it exits unexpectedly, replaced when the `current` link names another release (an
upgrade or a rollback switches releases while `erpctl up` runs).

The supervisor opens the listening socket once and every child inherits it (as gunicorn's arbiter
hands its sockets to its workers): the port never closes while `erpctl up` runs. A switch starts the
new child beside the old one, then stops the old one, which first stops accepting and finishes the
requests it holds; a restarted child finds the connections that came meanwhile waiting in the backlog.

Liveness: a serving child is asked GET /healthz every HEALTH_INTERVAL_SECONDS, waiting at most
HEALTH_TIMEOUT_SECONDS. After UNHEALTHY_AFTER failed checks in a row it is hung (stopped, deadlocked,
swapping): it is stopped (SIGTERM, SIGKILL after the stop grace of 10 s) and restarted like a child
that exited. A child that stops answering is killed at most
    UNHEALTHY_AFTER x (HEALTH_INTERVAL_SECONDS + HEALTH_TIMEOUT_SECONDS) + poll (1 s) + grace (10 s) = 32 s
later, and serves again after the back-off (1 s the first time) and its start-up.
Every restart counts in `restarts` (the metric erpctl_erp_restarts_total).

Workers: the child serves with `workers` processes of `threads` threads each (the installation's
erp_workers and erp_threads; launcher.py, erp_core.workers), its master the pid watched here. A worker
that dies or stops answering is replaced by the master; the whole child (master and workers, one process
group) is what /healthz judges, what a hang stops and a restart replaces. A release that cannot serve
with several workers (one from before them) is served by one process, as before.

With no release current, `erpctl up` serves the ERP bundled with erpctl the same way (`Bundled`: this
environment's Python and erp_core), with the same liveness, and never switches to a release (a
release made current is served from the next `erpctl up`).

The state is published for `erpctl status` in <data dir>/releases/serving.json.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Target
from ..errors import CannotListen, ReleaseError
from ..fsutil import atomic_write_text
from .. import http, layout, procs
from .process import ErpProcess, http_url
from .store import Release, current, current_version, get, releases_dir

log = logging.getLogger("controlplane.erp")

SERVING_FILE = layout.basename("serving")
BACKOFF_SECONDS = (1, 2, 4, 8, 16, 30)
STABLE_SECONDS = 60.0  # a child that served this long starts the back-off afresh when it exits
HEALTH_INTERVAL_SECONDS = 5.0
HEALTH_TIMEOUT_SECONDS = 2.0
UNHEALTHY_AFTER = 3
LISTEN_BACKLOG = 1024


def listen_socket(host: str, port: int, flag: str = "--erp-port") -> socket.socket:
    """The ERP's listening socket, bound and listening (port 0: a free one). The supervisor keeps it open
    for as long as it serves and each ERP child inherits it: while a child is replaced, connections wait
    in its backlog instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(LISTEN_BACKLOG)
        return s
    except OSError as exc:
        s.close()
        raise CannotListen(f"cannot listen on {host}:{port} for the ERP: {exc.strerror or exc}",
                           fix=f"Stop whatever uses port {port} (e.g. 'ss -ltnp sport = :{port}'), or choose "
                               f"another port with {flag}.", host=host, port=port) from None


@dataclass(frozen=True)
class Bundled:
    """The erp_core of erpctl's own environment, served as a child like a release when none is current."""

    version: str
    python: Path = Path(sys.executable)
    path: Path = Path(sys.prefix)


def read_serving(target: Target) -> dict:
    """What the last `erpctl up` published about the release it serves ({} if none)."""
    try:
        return json.loads((releases_dir(target) / SERVING_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return {}


def restarts_here(data_dir) -> int:
    """How many times the `erpctl up` of this process has restarted its ERP (0 when it serves none)."""
    try:
        serving = json.loads(layout.path(Path(data_dir), "serving").read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return 0
    return int(serving.get("restarts") or 0) if serving.get("erpctl_pid") == os.getpid() else 0


class Supervisor:
    """start() serves the current release (raises if it cannot), a thread then watches; always stop()."""

    def __init__(self, target: Target, field_key: str, *, host: str = "127.0.0.1", port: int = 0,
                 poll_seconds: float = 1.0, start_timeout: float = 60.0, backoff=BACKOFF_SECONDS,
                 stable_seconds: float = STABLE_SECONDS, log_level: str = "info",
                 health_interval: float = HEALTH_INTERVAL_SECONDS, health_timeout: float = HEALTH_TIMEOUT_SECONDS,
                 unhealthy_after: int = UNHEALTHY_AFTER, bundled: Bundled | None = None, env: dict | None = None,
                 workers: int = 1, threads: int = 16):
        self.target, self.host = target, host
        self.workers, self.threads = workers, threads
        self._env = env  # more variables for the ERP process (ERP_METRICS_TOKEN)
        self.bundled = bundled
        self._listener = listen_socket(host, port)
        self.port = self._listener.getsockname()[1]
        self._key = field_key
        self.poll_seconds, self.start_timeout = poll_seconds, start_timeout
        self.backoff, self.stable_seconds = tuple(backoff), stable_seconds
        self._log_level = log_level
        self.health_interval, self.health_timeout = health_interval, health_timeout
        self.unhealthy_after = unhealthy_after
        self._next_check = 0.0
        self._failed_checks = 0
        self.release: Release | Bundled | None = None
        self.proc: ErpProcess | None = None
        self.restarts = 0
        self._failures = 0
        self._restart_at: float | None = None
        self._refused: str | None = None  # a `current` that names no usable release: not retried until it changes
        self._warned_no_current = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    # ---- the public part -------------------------------------------------------------------------
    def start(self) -> dict:
        """Serve the current release; ReleaseNotFound when none is current, ReleaseError/CannotListen when
        its ERP does not come up."""
        release = self.bundled or current(self.target)
        if release is None:
            raise ReleaseError("no release is current", fix="Make one current with 'erpctl release current VERSION'.")
        self.release = release
        self.proc = self._spawn(release)
        try:
            self.proc.wait_serving(self.start_timeout, cancel=self._stop)
        except BaseException:
            self.proc.stop()
            self._publish("failed")
            raise
        self._started()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="release-supervisor")
        self._thread.start()
        return self.status()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.start_timeout + 15)
        if self.proc is not None:
            self.proc.stop()
            self._publish("stopped")
            log.info("stopped the ERP", extra={"release": self.release.version if self.release else None})
        self._listener.close()

    def status(self) -> dict:
        p = self.proc
        return {"version": self.release.version if self.release else None, "pid": p.pid if p else None,
                "alive": bool(p and p.alive()), "url": self.url + "/", "restarts": self.restarts,
                "path": str(self.release.path) if self.release else None,
                "python": str(self.release.python) if self.release else None, "bundled": self.bundled is not None,
                "ready_seconds": getattr(self, "ready_seconds", None), "workers": self.workers,
                "threads": self.threads}

    # ---- the watch -------------------------------------------------------------------------------
    def _spawn(self, release: Release | Bundled) -> ErpProcess:
        self._spawned_at = time.monotonic()
        return ErpProcess(release, self.target.database_url, self._key, host=self.host, port=self.port,
                          log_level=self._log_level, sock=self._listener, env=self._env, workers=self.workers,
                          threads=self.threads).start()

    def _started(self) -> None:
        # how long its ERP took from spawn to serving: the upgrade plan's estimate of a switch
        self.ready_seconds = round(time.monotonic() - self._spawned_at, 2)
        self._restart_at = None
        self._failed_checks, self._next_check = 0, time.monotonic() + self.health_interval
        log.info("serving release", extra={"release": self.release.version, "pid": self.proc.pid,
                                          "url": self.url + "/", "restarts": self.restarts})
        self._publish("serving")

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive its own mistakes; logged
                log.exception("release supervisor: unexpected error (still supervising)")

    def _tick(self) -> None:
        if self.bundled is not None:
            self._keep_alive()
            return
        wanted = current_version(self.target)
        if wanted is not None:
            self._warned_no_current = False
        if wanted == self.release.version:
            self._refused = None
        if wanted is not None and wanted != self.release.version and wanted != self._refused:
            self._switch(wanted)
            return
        if wanted is None and not self._warned_no_current:
            self._warned_no_current = True
            log.warning("no release is current any more: still serving the last one",
                        extra={"release": self.release.version})
        self._keep_alive()

    def _keep_alive(self) -> None:
        """Check a serving child's health; restart one that exited, after the back-off."""
        if self.proc.alive():
            self._check_health()
            return
        now = time.monotonic()
        if self._restart_at is None:
            uptime = now - (self.proc.started_at or now)
            if uptime >= self.stable_seconds:
                self._failures = 0
            delay = self.backoff[min(self._failures, len(self.backoff) - 1)]
            self._failures += 1
            self._restart_at = now + delay
            log.warning("the ERP exited unexpectedly: restarting it", extra={
                "release": self.release.version, "pid": self.proc.pid, "returncode": self.proc.returncode,
                "restart_in_seconds": delay, "stderr_tail": self.proc.stderr_tail()[-2000:]})
            self._publish("restarting")
        elif now >= self._restart_at:
            self.restarts += 1
            self.proc.end_group()  # workers a killed child left (they were finishing their requests meanwhile)
            self._launch()

    def _check_health(self) -> None:
        """Ask the serving child GET /healthz when due; stop it once UNHEALTHY_AFTER checks in a row failed
        (the next tick restarts it as a child that exited)."""
        now = time.monotonic()
        if self._restart_at is not None or now < self._next_check:
            return
        self._next_check = now + self.health_interval
        try:
            status, _ = http.get(self.url + "/healthz", timeout=self.health_timeout)
            failure = None if status == 200 else f"HTTP {status}"
        except OSError as exc:
            failure = str(getattr(exc, "reason", exc))
        if failure is None and procs.state(self.proc.pid) == "T":
            # its workers answer, but a stopped master replaces none that dies and cannot stop in order
            failure = "the ERP's main process is stopped (SIGSTOP)"
        if failure is None:
            self._failed_checks = 0
            return
        self._failed_checks += 1
        log.warning("the ERP did not answer /healthz", extra={
            "release": self.release.version, "pid": self.proc.pid, "reason": failure,
            "failed_checks": self._failed_checks, "limit": self.unhealthy_after})
        if self._failed_checks >= self.unhealthy_after:
            log.error("the ERP is hung (no answer to /healthz): killing it to restart it", extra={
                "release": self.release.version, "pid": self.proc.pid, "failed_checks": self._failed_checks})
            self._publish("restarting")
            self.proc.stop()

    def _switch(self, version: str) -> None:
        try:
            new = get(self.target, version)
        except ReleaseError as exc:
            self._refused = version
            log.error("the current release cannot be served: still serving the previous one",
                      extra={"current": version, "serving": self.release.version, "reason": exc.detail})
            return
        old = self.proc
        log.info("switching release", extra={"from": self.release.version, "to": new.version, "pid": old.pid})
        self._publish("switching")
        self.release, self._failures, self._refused = new, 0, None
        # The new child starts beside the old one, on the same listening socket; the old one then stops
        # taking connections and finishes the requests it has (process.py). No connection is refused.
        self._launch()
        old.stop()

    def _launch(self) -> None:
        self.proc = self._spawn(self.release)
        try:
            self.proc.wait_serving(self.start_timeout, cancel=self._stop)
        except ReleaseError as exc:
            if self._stop.is_set():
                return
            self.proc.stop()
            delay = self.backoff[min(self._failures, len(self.backoff) - 1)]
            self._failures += 1
            self._restart_at = time.monotonic() + delay
            log.error("the ERP did not start: trying again", extra={
                "release": self.release.version, "reason": exc.detail[-2000:], "retry_in_seconds": delay})
            self._publish("restarting")
            return
        self._started()

    def _publish(self, state: str) -> None:
        data = {"state": state, **self.status(), "erpctl_pid": os.getpid(),
                "at": dt.datetime.now(dt.timezone.utc).isoformat()}
        try:
            atomic_write_text(releases_dir(self.target) / SERVING_FILE, json.dumps(data, indent=1) + "\n")
        except OSError:
            log.warning("cannot write the serving state", exc_info=True)
