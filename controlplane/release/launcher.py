"""Run by a release's own Python (`<env>/bin/python -E -P launcher.py --host H --port P`): serve that
release's ERP until SIGTERM or SIGINT, then stop cleanly (exit 0).

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
import json
import logging
import os
import signal
import sys
import sysconfig
import threading

EXIT_CANNOT_LISTEN = 11
EXIT_USAGE = 2


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


def main() -> int:
    own_site_packages_first()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="info")
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
    from erp_core.app import create_app
    from erp_core.config import Settings
    from erp_core.serve import Server

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    app = create_app(Settings(database_url, field_key=field_key))
    try:
        server = Server(app, host=args.host, port=args.port)
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
