"""`erpctl up`: the ERP and the ops console served from one process on one machine.

First start on a data directory: create it, create the field-encryption key, migrate the new
database, and with demo=True add one user per role (the admin's random password kept in the data
directory) and a year of demo data. Later starts reuse all of it and never migrate an existing
database behind the operator's back: a schema the code does not support is refused with the reason
(`erpctl erp migrate`, or a staged upgrade, moves it forward).

Ports are bound before any other work, so a taken port fails at once. SIGINT and SIGTERM stop
cleanly: both servers close, the engine is disposed, and `run` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

from erp_core import __version__
from erp_core import seed as erp_seed
from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.db import Database, current_revision, migrate
from erp_core.domain.permissions import ROLES
from erp_core.errors import Conflict
from erp_core.serve import Server
from erp_core.services import auth

from . import config
from .console.app import create_app as create_console
from .erp_admin import check_schema
from .errors import CannotListen, Interrupted
from .monitoring.service import Monitoring

log = logging.getLogger("controlplane.up")

DEMO_SCALE = 1
STOP_GRACE_SECONDS = 2.0


@dataclass
class UpOptions:
    target: config.Target
    host: str = "127.0.0.1"
    erp_port: int = 8000
    ops_port: int = 8001
    demo: bool = False


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _listen(app, host: str, port: int, what: str, flag: str) -> Server:
    try:
        return Server(app, host=host, port=port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CannotListen(
            f"cannot listen on {host}:{port} for the {what}: {reason}",
            fix=f"Stop whatever uses port {port} (e.g. 'ss -ltnp sport = :{port}'), or choose another port "
                f"with {flag}.", host=host, port=port) from None


class Stack:
    """The parts of one running installation; `prepare` then `start`, and always `stop`."""

    def __init__(self, opts: UpOptions):
        self.opts = opts
        self.db: Database | None = None
        self.erp: Server | None = None
        self.ops: Server | None = None
        self.monitoring: Monitoring | None = None

    def prepare(self) -> dict:
        o, target = self.opts, self.opts.target
        config.ensure_data_dir(target)
        key = config.field_key(target, create=True)
        self.db = Database(target.database_url)
        erp_app = create_app(Settings(target.database_url, field_key=key), self.db)
        self.erp = _listen(erp_app, o.host, o.erp_port, "ERP", "--erp-port")
        erp_url = _url(o.host, self.erp.port)
        self.monitoring = Monitoring(target, erp_url)  # checks the job schedules before anything else
        links = {"erp": erp_url + "/", "api_docs": erp_url + "/api/v1/openapi.json"}
        self.ops = _listen(create_console(links, data_dir=target.data_dir, job_ids=self.monitoring.job_ids),
                           o.host, o.ops_port, "ops console", "--ops-port")

        migrated = None
        before = current_revision(self.db.engine)
        if before is None:
            t0 = time.perf_counter()
            after = migrate(target.database_url)
            migrated = {"from_revision": None, "to_revision": after}
            log.info("created the ERP schema", extra={"revision": after, "seconds": round(time.perf_counter() - t0, 2)})
        status = check_schema(self.db.engine, target)

        info = {
            "version": __version__,
            "erp_url": erp_url + "/",
            "api_docs_url": erp_url + "/api/v1/openapi.json",
            "erp_port": self.erp.port,
            "ops_port": self.ops.port,
            "ops_url": _url(o.host, self.ops.port) + "/",
            "healthz_url": _url(o.host, self.ops.port) + "/healthz",
            "data_dir": str(target.data_dir),
            "database": target.display_url,
            "schema_revision": status.current,
            "migrated": migrated,
            "demo": None,
        }
        info["monitoring"] = self.monitoring.prepare(self.db, info["ops_url"])
        if o.demo:
            info["demo"] = self._demo()
        return info

    def _demo(self) -> dict:
        """One user per role sharing the demo password; demo data if there are no sales orders yet."""
        target = self.opts.target
        login, login_created = config.demo_login(target)
        created, existing = [], []
        with self.db.session(actor="erpctl") as s:
            for role in ROLES:
                username = login["username"] if role == "admin" else role
                try:
                    auth.add_user(s, username, login["password"], role, full_name=f"Demo {role}")
                    created.append(username)
                except Conflict:
                    existing.append(username)
        password = login["password"]
        note = ""
        if login_created and login["username"] in existing:
            # The database already had the admin, with a password this data directory does not know.
            password, note = None, (f"{config.DEMO_LOGIN_FILE} was missing and user {login['username']!r} already "
                                    "existed: its password is the one it was created with")
            log.warning("demo password unknown", extra={"user": login["username"]})
        seeded = None
        if not erp_seed.has_sales_orders(self.db):
            t0 = time.perf_counter()
            # One transaction: an interrupted first start leaves no half-seeded database behind.
            seeded = erp_seed.seed(self.db, DEMO_SCALE, single_transaction=True)
            log.info("seeded demo data", extra={"scale": DEMO_SCALE, "seconds": round(time.perf_counter() - t0, 2)})
        return {"username": login["username"], "password": password, "note": note,
                "users": sorted(set(created) | set(existing)), "users_created": created, "seeded": seeded}

    def start(self) -> None:
        self.erp.start()
        self.ops.start()
        self.monitoring.start()
        log.info("serving", extra={"erp_port": self.erp.port, "ops_port": self.ops.port,
                                  "host": self.opts.host})

    def stop(self) -> None:
        """Stop the scheduled jobs, close both servers (listeners and open connections), then the engine."""
        if self.monitoring is not None:
            self.monitoring.stop()
        for srv in (self.erp, self.ops):
            if srv is not None:
                srv.stop(timeout=STOP_GRACE_SECONDS)
        if self.db is not None:
            self.db.dispose()
        self.erp = self.ops = self.db = self.monitoring = None


def run(opts: UpOptions, started: Callable[[dict], None]) -> dict:
    """Prepare, serve until SIGINT or SIGTERM, stop. `started(info)` is called once serving."""
    stop = threading.Event()
    state = {"serving": False, "signal": None}

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if state["serving"]:
            state["signal"] = name
            stop.set()
        else:
            raise Interrupted(f"stopped by {name} before the ERP was serving",
                              fix="Run 'erpctl up' again (demo data is seeded in one transaction, so "
                                  "none of it was kept).")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(opts)
    t0 = time.monotonic()
    try:
        info = stack.prepare()
        stack.start()
        state["serving"] = True
        started(info)
        while not stop.wait(0.5):
            pass
        log.info("stopping", extra={"signal": state["signal"]})
    finally:
        state["serving"] = True  # a second signal while stopping must not interrupt the clean-up
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped", extra={"uptime_seconds": round(time.monotonic() - t0, 1)})
    return {"event": "stopped", "signal": state["signal"]}
