"""Serving the ERP with several worker processes: gunicorn's arbiter (a master) and N gthread workers of
T threads each, all accepting on one listening socket (inherited as a file descriptor, or bound here).

    serve_workers(Settings(url, field_key=key), fd=5, workers=2, threads=8, on_ready=say_serving)  # until SIGTERM

One Python process is bound to one core by its interpreter lock: several workers use every core of the
host. What it keeps of the single-process server (erp_core.serve):

- Metrics: the caller sets PROMETHEUS_MULTIPROC_DIR (a fresh directory) before erp_core.metrics is
  imported; each worker writes its instruments there, /metrics sums them (erp_core.metrics), and the
  master tells prometheus-client about every worker that exits (child_exit: mark_process_dead).
- Body limit: a request whose Content-Length exceeds the largest limit (limits.MAX_BODY_BYTES) is
  answered 413 problem+json by the app from its headers (limits.install), and its connection is
  closed afterwards instead of reading the body through to reuse it.
- Graceful stop: on SIGTERM the master stops the workers, which stop accepting, finish the requests
  they hold (at most GRACEFUL_SECONDS) and exit; the listening socket stays open in whoever else holds
  it (`erpctl up`), so connections meanwhile wait in its backlog.
- Liveness: a worker that does not report to the master for WORKER_TIMEOUT_SECONDS (stopped, stuck)
  is killed and replaced, as is one that dies; the app of each worker is made in that worker (no
  database connection is shared across a fork).
"""

from __future__ import annotations

import logging
import os
import threading
import time

GRACEFUL_SECONDS = 5
WORKER_TIMEOUT_SECONDS = 30
KEEPALIVE_SECONDS = 30


def available() -> bool:
    """Whether gunicorn is installed in this environment."""
    import importlib.util

    return importlib.util.find_spec("gunicorn") is not None


def pool_size(threads: int) -> int:
    """Database connections one worker keeps: one per thread (a request holds one at a time)."""
    return max(1, threads)


def serve_workers(settings, *, fd: int | None = None, host: str = "127.0.0.1", port: int = 0, workers: int = 2,
                  threads: int = 8, on_ready=None, formatter: logging.Formatter | None = None,
                  log_level: str = "warning", watch_parent: bool = True) -> int:
    """Run the master until SIGTERM (graceful) or SIGINT; its exit status. Each worker makes its own app
    of `settings` (erp_core.config.Settings), its database pool sized to its threads; on_ready(pid=,
    port=) is called in the master once it listens; the master stops by itself when the process that
    started it goes away (watch_parent)."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    from .app import create_app  # imported once in the master: the workers fork with it loaded
    from .db import Database

    def make_app():
        size = pool_size(threads)
        return create_app(settings, db=Database(settings.database_url, pool_size=size, max_overflow=size // 2))

    class JsonLogger(Logger):
        def setup(self, cfg):
            super().setup(cfg)
            if formatter is not None:
                for h in self.error_log.handlers:
                    h.setFormatter(formatter)

    def when_ready(arbiter):
        bound = arbiter.LISTENERS[0].sock.getsockname() if arbiter.LISTENERS else (host, port)
        if watch_parent:
            _stop_when_orphaned(os.getppid())
        if on_ready is not None:
            on_ready(pid=os.getpid(), port=int(bound[1]))

    options = {"bind": [f"fd://{fd}"] if fd is not None else [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
               "workers": workers, "threads": threads, "worker_class": "gthread",
               "graceful_timeout": GRACEFUL_SECONDS, "timeout": WORKER_TIMEOUT_SECONDS,
               "keepalive": KEEPALIVE_SECONDS, "worker_connections": 1000, "backlog": 1024,
               "logger_class": JsonLogger, "loglevel": log_level, "errorlog": "-", "accesslog": None,
               "control_socket_disable": True, "proc_name": "erp",
               "when_ready": when_ready, "child_exit": _child_exit, "worker_exit": _worker_exit,
               "pre_request": _pre_request}

    class ErpApplication(BaseApplication):
        def load_config(self):
            for name, value in options.items():
                if name in self.cfg.settings:
                    self.cfg.set(name, value)

        def load(self):
            return make_app()

    try:
        ErpApplication().run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _child_exit(_arbiter, worker):
    """In the master, once a worker has exited: its live gauges no longer count (metrics multiprocess)."""
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def _worker_exit(_arbiter, worker):
    # A worker that finished its requests and stops cleanly ends now, without the interpreter's slow
    # tear-down of a whole app (a second or more on a loaded host, which a graceful stop waits for).
    # Called in the master too (a worker already gone): nothing to do there; nor for a failed worker.
    import sys

    leaving = sys.exc_info()[1]
    if os.getpid() != worker.pid or not isinstance(leaving, SystemExit) or leaving.code not in (0, None):
        return
    app = getattr(worker, "wsgi", None)
    db = getattr(app, "extensions", {}).get("erp_db") if app is not None else None
    if db is not None:
        db.dispose()
    logging.shutdown()
    os._exit(0)


def _pre_request(_worker, req):
    """A body over the largest limit is answered 413 from its headers (limits.install); its connection is
    then closed, not kept by reading the body through."""
    from . import limits

    length = next((v for k, v in req.headers if k == "CONTENT-LENGTH"), None)
    if length is not None and length.isdigit() and int(length) > limits.MAX_BODY_BYTES:
        req.must_close = True  # answered from its headers; its body is not read to keep the connection


def _stop_when_orphaned(parent: int, every: float = 1.0) -> None:
    """SIGTERM to this process (a graceful stop) once its parent is gone."""
    import signal

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        logging.getLogger("erp_core.workers").warning("the process that started this ERP is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="erp-parent-watch").start()
