"""The ERP of one release as a child process: `<env>/bin/python -E -P launcher.py --host H --port P`.

    erp = ErpProcess(release, database_url, field_key, port=8000).start()
    erp.wait_serving(timeout=60)   # it answers /healthz (it may be not ready: maintenance, schema)
    erp.wait_ready(timeout=60)     # it answers /readyz with 200
    erp.stop()                     # SIGTERM, then SIGKILL after the grace

The URL and the key travel in the child's environment, never on its command line. The child runs in
its own session (a Ctrl+C on the terminal reaches erpctl, which stops it in order) and stops by
itself when its parent goes away. With workers >= 2 (and a release that can) the child is a master
process whose workers serve (launcher.py): they share its process group, which stop() ends whole
once the master is gone (a worker left by a killed master, or one stopped with the group), and a
fresh directory for their metrics (PROMETHEUS_MULTIPROC_DIR), removed when the child stops. Its
stderr (JSON log lines) is passed on to our log; the last lines are kept for the error raised when
it dies before it serves.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .. import http
from ..errors import CannotListen, ReleaseError
from . import runner
from .store import Release

log = logging.getLogger("controlplane.erp")

LAUNCHER = Path(__file__).with_name("launcher.py")
EXIT_CANNOT_LISTEN = 11
STOP_GRACE_SECONDS = 10.0
TAIL_LINES = 30
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


def http_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


METRICS_PREFIX = "erp-metrics-"


def fresh_metrics_dir() -> str:
    """A new directory for the metrics of one ERP child's workers, in the temporary directory, named after
    this process; the ones of processes that are gone (killed before they could remove theirs) go."""
    base = Path(tempfile.gettempdir())
    for old in base.glob(METRICS_PREFIX + "*-*"):
        owner = old.name[len(METRICS_PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")


class ErpProcess:
    """One release's ERP served by a child process on host:port (port 0: a free one, known once serving)."""

    def __init__(self, release: Release, database_url: str, field_key: str, *, host: str = "127.0.0.1",
                 port: int = 0, log_level: str = "info", sock: socket.socket | None = None,
                 env: dict | None = None, workers: int = 1, threads: int = 16):
        self.release = release
        self.workers, self.threads = workers, threads
        self._metrics_dir: str | None = None
        self._sock = sock  # a listening socket the child serves on (inherited), instead of binding host:port
        self.host, self._port = host, port
        self._database_url, self._field_key = database_url, field_key
        self._log_level = log_level
        self._env = dict(env or {})  # more variables for the child (ERP_METRICS_TOKEN)
        self._proc: subprocess.Popen | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._events: dict[str, dict] = {}
        self._event_seen = threading.Condition()
        self._readers: list[threading.Thread] = []
        self.started_at: float | None = None

    # ---- what it is ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def port(self) -> int:
        serving = self._events.get("serving")
        return int(serving["port"]) if serving else self._port

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def serving_info(self) -> dict | None:
        """What the child said once listening: pid, port, version, erp_core_file."""
        return self._events.get("serving")

    def stderr_tail(self) -> str:
        return "\n".join(self._tail)

    def as_dict(self) -> dict:
        return {"version": self.release.version, "pid": self.pid, "url": self.url + "/",
                "python": str(self.release.python), "path": str(self.release.path)}

    # ---- life ----------------------------------------------------------------------------------
    def start(self) -> "ErpProcess":
        if self._proc is not None:
            raise RuntimeError("an ErpProcess starts once; make a new one")
        more = {"ERP_DATABASE_URL": self._database_url, "ERP_FIELD_KEY": self._field_key}
        if self.workers > 1:  # each worker's instruments in a file there, /metrics sums them (erp_core.metrics)
            self._metrics_dir = more["PROMETHEUS_MULTIPROC_DIR"] = fresh_metrics_dir()
        env = runner.child_env({**self._env, **more})
        inherited = () if self._sock is None else (self._sock.fileno(),)
        args = runner.python_command(self.release.python, LAUNCHER, "--host", self.host, "--port", self._port,
                                     "--log-level", self._log_level, "--workers", self.workers,
                                     "--threads", self.threads, *(("--fd", inherited[0]) if inherited else ()))
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=env, cwd=self.release.path,
                                          start_new_session=True, pass_fds=inherited)
        except OSError as exc:
            self._remove_metrics_dir()
            raise ReleaseError(f"cannot start the ERP of release {self.release.version}: {exc.strerror or exc}",
                               fix="Install the release again ('erpctl release install WHEEL').") from None
        self.started_at = time.monotonic()
        for target, name in ((self._read_stdout, "out"), (self._read_stderr, "err")):
            t = threading.Thread(target=target, daemon=True, name=f"erp-{self.release.version}-{name}")
            t.start()
            self._readers.append(t)
        log.info("started the ERP", extra={"release": self.release.version, "pid": self._proc.pid})
        return self

    def _read_stdout(self) -> None:
        for line in self._proc.stdout:
            line = line.strip()
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                with self._event_seen:
                    self._events[event["event"]] = event
                    self._event_seen.notify_all()
            elif line:
                self._tail.append(line)

    def _read_stderr(self) -> None:
        extra = {"release": self.release.version, "erp_pid": self._proc.pid}
        for line in self._proc.stderr:
            line = line.rstrip("\n")
            if not line:
                continue
            self._tail.append(line)
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if isinstance(rec, dict) and "msg" in rec:
                fields = {**extra, "erp_logger": rec.get("logger")}
                if rec.get("exc"):
                    fields["exc_text"] = rec["exc"]
                log.log(_LEVELS.get(rec.get("level"), logging.INFO), rec["msg"], extra=fields)
            else:
                log.warning(line, extra=extra)

    def _died(self, what: str) -> ReleaseError:
        for t in self._readers:
            t.join(timeout=2)
        code = self._proc.returncode
        if code == EXIT_CANNOT_LISTEN:
            reason = (self._events.get("cannot_listen") or {}).get("reason", "address in use")
            return CannotListen(f"the ERP of release {self.release.version} cannot listen on {self.host}:"
                                f"{self._port}: {reason}",
                                fix=f"Stop whatever uses port {self._port} (e.g. 'ss -ltnp sport = :{self._port}'), "
                                    "or choose another port.", host=self.host, port=self._port)
        return ReleaseError(f"the ERP of release {self.release.version} exited with code {code} {what}:\n"
                            f"{self.stderr_tail()}",
                            fix="The lines above are the ERP's own; fix what they say (database URL, field key, "
                                "schema), or switch to another release.", version=self.release.version,
                            returncode=code)

    def wait_serving(self, timeout: float = 60, cancel: threading.Event | None = None) -> dict:
        """Wait until it listens and answers /healthz with 200; its /healthz body. ReleaseError (with the
        tail of its stderr) if it exits first or takes longer than `timeout`; CannotListen if the port is taken."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise self._died("before it was serving")
            if cancel is not None and cancel.is_set():
                raise ReleaseError("cancelled while waiting for the ERP to serve", fix="")
            if "serving" in self._events:
                try:
                    status, body = http.get(self.url + "/healthz", timeout=2)
                    if status == 200:
                        return body or {}
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise ReleaseError(f"the ERP of release {self.release.version} did not answer /healthz within "
                                   f"{timeout:.0f} s:\n{self.stderr_tail()}",
                                   fix="Check the host's load and the lines above.", version=self.release.version)
            with self._event_seen:
                self._event_seen.wait(0.1)

    def wait_ready(self, timeout: float = 60, cancel: threading.Event | None = None) -> dict:
        """Wait until /readyz answers 200 (database reachable, schema supported, not in maintenance); its body."""
        deadline = time.monotonic() + timeout
        self.wait_serving(timeout, cancel)
        last = None
        while True:
            if self._proc.poll() is not None:
                raise self._died("before it was ready")
            try:
                status, body = http.get(self.url + "/readyz", timeout=2)
                last = body
                if status == 200:
                    return body or {}
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ReleaseError(f"the ERP of release {self.release.version} was not ready within {timeout:.0f} s: "
                                   f"/readyz says {json.dumps(last, default=str)}",
                                   fix="Its checks above say why (database, schema, maintenance mode).",
                                   version=self.release.version, readyz=last)
            time.sleep(0.2)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM, then SIGKILL to its whole process group (its workers too) if it has not exited after
        `grace` seconds (a stopped or hung one); what is left of the group once the child is gone is
        killed too. Its exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            try:
                self._proc.send_signal(signal.SIGTERM)
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("the ERP did not stop in time: killing it",
                            extra={"release": self.release.version, "pid": self._proc.pid, "grace_seconds": grace})
                self._signal_group(signal.SIGKILL)
                self._proc.kill()
                self._proc.wait()
        self.end_group()
        for t in self._readers:
            t.join(timeout=2)
        return self._proc.returncode

    def end_group(self) -> None:
        """Once the child has exited: kill whatever is left of its process group (the workers of a master
        that was killed), and remove its metrics directory."""
        if self._proc is not None and self._proc.poll() is not None:
            self._signal_group(signal.SIGCONT)
            self._signal_group(signal.SIGKILL)
            self._remove_metrics_dir()

    def _signal_group(self, sig: int) -> None:
        # its own session (start_new_session): the group's id is its pid, and holds only the ERP's processes
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _remove_metrics_dir(self) -> None:
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None

    def __enter__(self) -> "ErpProcess":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
