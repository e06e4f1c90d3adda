"""Run by a release's own Python (`<env>/bin/python -E -P launcher.py --host H --port P [--fd N]`): serve
that release's ERP until SIGTERM or SIGINT, then stop cleanly (exit 0).

With --workers N (N >= 2) and a release that can (its environment has gunicorn and its erp_core has
erp_core.workers), N worker processes of --threads threads each serve under one master process
(erp_core.workers: gunicorn), which stops gracefully on SIGTERM too; otherwise one process serves with
waitress (erp_core.serve), as every release before could.

With --fd it serves on the listening socket it inherited as file descriptor N (`erpctl up` keeps it
open across children) instead of binding H:P. On SIGTERM it first stops accepting, then lets the
requests it holds finish (at most DRAIN_SECONDS) before it closes them: the next child takes the
connections that wait in the socket's backlog, and none is refused or cut.

The database URL and the field key come from the environment (ERP_DATABASE_URL, ERP_FIELD_KEY), never
the command line, which `ps` shows. Uses only the standard library and ERP interfaces release 1.0
already has: erp_core.config.Settings, erp_core.app.create_app, erp_core.serve.Server (its
constructor, start and stop). Prints one JSON line on stdout once listening ({"event": "serving",
"port": ..., "version": ...}) and logs JSON lines on stderr. Stops by itself if its parent goes away.

With inenv.py, exempt from the rule that the control plane imports only erp_core.ops and
erp_core.errors: it imports the release's own erp_core, and release 1.0 has no erp_core.ops.
tests/controlplane/test_import_graph.py checks that it keeps to the standard library and to
names release 1.0 has.
"""

import argparse
import datetime as dt
import importlib
import importlib.util
import json
import logging
import os
import inspect
import signal
import socket
import sys
import sysconfig
import threading
import time

EXIT_CANNOT_LISTEN = 11
EXIT_USAGE = 2
DRAIN_SECONDS = 5.0
QUIET_SECONDS = 0.3  # a connection that was active this recently may still send its request
DEFAULT_THREADS = 16
WORKERS_MODULE = "erp_core.workers"  # only releases that can serve with several workers have it


def own_site_packages_first() -> None:
    """The environment's own site-packages first: its erp_core, not the control plane's copy."""
    paths = sysconfig.get_paths()
    own = [p for p in dict.fromkeys((paths["purelib"], paths["platlib"])) if p]
    for p in own:
        while p in sys.path:
            sys.path.remove(p)
    sys.path[:0] = own


class JsonLines(logging.Formatter):
    def format(self, record):
        out = {"ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def say(event: str, **data) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def serve_on(server_class, app, host: str, port: int, fd: int | None, threads: int = DEFAULT_THREADS):
    """The release's Server, on the inherited socket `fd` when given. A release whose Server takes no
    socket (1.0) gets it through the waitress `sockets` setting its Server passes on."""
    params = inspect.signature(server_class).parameters
    more = {"threads": threads} if "threads" in params and threads != DEFAULT_THREADS else {}
    if fd is None:
        return server_class(app, host=host, port=port, **more)
    sock = socket.socket(fileno=fd)
    if "sockets" in params:
        return server_class(app, sockets=[sock], **more)
    module = sys.modules[server_class.__module__]
    made = module.create_server

    def on_inherited(application, **kw):
        kw.pop("host", None)
        kw.pop("port", None)
        return made(application, sockets=[sock], **kw)

    module.create_server = on_inherited
    try:
        return server_class(app, host=host, port=port)
    finally:
        module.create_server = made


def drain(server, log) -> None:
    """Stop accepting (the socket stays open in whoever else holds it), then wait until no connection
    has a request in progress or had activity in the last QUIET_SECONDS (at most DRAIN_SECONDS)."""
    waitress = getattr(server, "_server", None)
    channels = getattr(waitress, "active_channels", None)
    if channels is None:
        return
    waitress.accepting = False
    waitress.pull_trigger()
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        now = time.time()
        busy = [c for c in list(channels.values()) if c.requests or getattr(c, "request", None) is not None
                or c.total_outbufs_len or now - c.last_activity < QUIET_SECONDS]
        if not busy:
            return
        time.sleep(0.02)
    log.warning("requests still in progress after %.0f s: closing them", DRAIN_SECONDS)


def main() -> int:
    own_site_packages_first()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--fd", type=int, default=None, help="serve on this inherited listening socket")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1: one waitress process)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads of each worker")
    args = parser.parse_args()

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(args.log_level.upper())
    for name in ("alembic", "waitress", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)
    log = logging.getLogger("erp_core.launcher")

    database_url = os.environ.pop("ERP_DATABASE_URL", "")
    field_key = os.environ.pop("ERP_FIELD_KEY", "")
    if not database_url or not field_key:
        log.error("ERP_DATABASE_URL and ERP_FIELD_KEY must be set in the environment")
        return EXIT_USAGE

    import erp_core
    from erp_core.config import Settings

    workers = several_workers(args.workers)
    if workers is not None:
        def serving(pid, port):
            say("serving", pid=pid, host=args.host, port=port, version=erp_core.__version__,
                erp_core_file=os.path.abspath(erp_core.__file__), workers=args.workers, threads=args.threads)

        return workers.serve_workers(Settings(database_url, field_key=field_key), fd=args.fd, host=args.host,
                                     port=args.port, workers=args.workers, threads=args.threads, on_ready=serving,
                                     formatter=JsonLines(), log_level=args.log_level)
    return serve_one(args, Settings(database_url, field_key=field_key), log)


def several_workers(workers: int):
    """erp_core.workers of this release when it serves with several workers, else None (one process)."""
    if workers < 2 or importlib.util.find_spec("gunicorn") is None:
        return None
    if importlib.util.find_spec(WORKERS_MODULE) is None:
        return None
    return importlib.import_module(WORKERS_MODULE)


def serve_one(args, settings, log) -> int:
    """One waitress process (erp_core.serve.Server) until SIGTERM or SIGINT, then a drained stop."""
    import erp_core
    from erp_core.app import create_app
    from erp_core.serve import Server

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    app = create_app(settings)
    try:
        server = serve_on(Server, app, args.host, args.port, args.fd, args.threads)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        say("cannot_listen", host=args.host, port=args.port, reason=exc.strerror or str(exc))
        return EXIT_CANNOT_LISTEN
    server.start()
    parent = os.getppid()
    say("serving", pid=os.getpid(), host=args.host, port=server.port, version=erp_core.__version__,
        erp_core_file=os.path.abspath(erp_core.__file__))
    log.info("serving release %s on %s:%s", erp_core.__version__, args.host, server.port)
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log.warning("the process that started this ERP is gone: stopping")
            break
    drain(server, log)
    try:
        server.stop(timeout=5)
    except OSError as exc:  # waitress' loop closed its wake-up pipe on its way out first: nothing to wake
        log.warning("the server's loop was already closing (%s): exiting", exc)
    db = app.extensions.get("erp_db")
    if db is not None:
        db.dispose()
    say("stopped", pid=os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
