"""`erpctl up`: the ERP and the ops console on one machine.

Which code serves the ERP: when a release is current in the data directory (`erpctl release
current`), that release's ERP runs as a supervised child process on the ERP port (restarted with a
back-off if it exits, replaced when `current` names another release); its own code creates,
checks and seeds the database. With no release installed, the bundled erp_core serves the same way, as
a supervised child process of erpctl's own environment (restarted if it exits or hangs).

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

from erp_core.errors import SchemaMismatch
from erp_core.ops import Database, Server, __version__, current_revision, load_field_key, migrate

from . import config, permissions
from . import release as releases
from .console.app import MAX_WEBHOOK_BYTES, create_app as create_console
from .erp_admin import check_schema
from .errors import CannotListen, Interrupted
from .faults import failpoint
from .monitoring.service import Monitoring
from .release import inenv
from .release import runner as release_runner
from .release.supervisor import Bundled, Supervisor

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
    ops_host: str | None = None       # where the ops console listens (None: the ERP's host)
    metrics_token: str | None = None  # required by /metrics (both ports) and /alerts when set
    mfa_roles: str = "admin,finance"  # the ERP's users of these roles log in with a second factor ('none': nobody)
    trusted_proxies: str = "none"  # the load balancers whose X-Forwarded-For names the client
    company: tuple = ()  # (name, tax id, address, bank account) the ERP prints on its documents; None: unset
    erp_workers: int = 2              # worker processes of the ERP (1: one process)
    erp_threads: int = 8              # threads of each


def _log_level() -> str:
    return logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _listen(app, host: str, port: int, what: str, flag: str, max_body: int) -> Server:
    try:
        return Server(app, host=host, port=port, max_body=max_body)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CannotListen(
            f"cannot listen on {host}:{port} for the {what}: {reason}",
            fix=f"Stop whatever uses port {port} (e.g. 'ss -ltnp sport = :{port}'), or choose another port "
                f"with {flag}.", host=host, port=port) from None


COMPANY_VARIABLES = ("ERP_COMPANY_NAME", "ERP_COMPANY_TAX_ID", "ERP_COMPANY_ADDRESS", "ERP_COMPANY_BANK_ACCOUNT")


def _erp_env(o: UpOptions) -> dict:
    """What the ERP process is given beyond the database URL and the field key: its metrics token, the
    roles that must log in with a second factor, the trusted proxies (when any) and the company's details
    for its printed documents (erp_core.config.Settings reads them)."""
    env = {"ERP_MFA_ROLES": o.mfa_roles}
    if o.trusted_proxies != "none":
        env["ERP_TRUSTED_PROXIES"] = o.trusted_proxies
    for name, value in zip(COMPANY_VARIABLES, o.company):
        if value:
            env[name] = value
    if o.metrics_token:
        env["ERP_METRICS_TOKEN"] = o.metrics_token
    return env


class Stack:
    """The parts of one running installation; `prepare` then `start`, and always `stop`."""

    def __init__(self, opts: UpOptions):
        self.opts = opts
        self.db: Database | None = None
        self.supervisor: Supervisor | None = None  # the ERP (the current release's, else the bundled), a child
        self.release: releases.Release | None = None
        self.ops: Server | None = None
        self.monitoring: Monitoring | None = None
        self._key: str | None = None

    def prepare(self) -> dict:
        o, target = self.opts, self.opts.target
        config.ensure_data_dir(target)
        permissions.tighten(target.data_dir)
        key = self._key = config.field_key(target, create=True)
        self.release = releases.current(target)
        self.db = Database(target.database_url)
        if self.release is not None:
            load_field_key(key)
        # binds the ERP's port now and keeps it for as long as it serves (each ERP child inherits it)
        ops_host = o.ops_host or o.host
        self.supervisor = Supervisor(target, key, host=o.host, port=o.erp_port, log_level=_log_level(),
                                     env=_erp_env(o), workers=o.erp_workers, threads=o.erp_threads,
                                     bundled=Bundled(__version__) if self.release is None else None)
        erp_port = self.supervisor.port
        if o.ops_port == erp_port:
            raise CannotListen(f"cannot listen on {o.host}:{erp_port} for the ops console: the ERP uses it",
                               fix="Choose another port with --ops-port.", host=o.host, port=erp_port)
        erp_url = _url(o.host, erp_port)
        self.monitoring = Monitoring(target, erp_url)  # checks the job schedules before anything else
        links = {"erp": erp_url + "/", "api_docs": erp_url + "/api/v1/openapi.json"}
        self.ops = _listen(create_console(links, data_dir=target.data_dir, job_ids=self.monitoring.job_ids,
                                          unrecorded=self.monitoring.scheduler.unrecorded,
                                          metrics_token=o.metrics_token, database_url=target.database_url),
                           ops_host, o.ops_port, "ops console", "--ops-port", MAX_WEBHOOK_BYTES)

        migrated, schema_revision = self._schema() if self.release is None else self._release_schema()
        info = {
            "version": __version__,
            "erp_url": erp_url + "/",
            "api_docs_url": erp_url + "/api/v1/openapi.json",
            "erp_port": erp_port,
            "ops_port": self.ops.port,
            "ops_url": _url(ops_host, self.ops.port) + "/",
            "healthz_url": _url(ops_host, self.ops.port) + "/healthz",
            "data_dir": str(target.data_dir),
            "database": target.display_url,
            "schema_revision": schema_revision,
            "migrated": migrated,
            "release": None,
            "erp_version": __version__ if self.release is None else self.release.version,
            "demo": None,
        }
        serving = {"host": o.host, "erp_port": erp_port, "ops_port": self.ops.port,
                   "ops_host": ops_host if ops_host != o.host else None,
                   "database": target.display_url, "database_backend": target.backend}
        info["monitoring"] = self.monitoring.prepare(self.db, info["ops_url"], serving)
        if o.demo:
            info["demo"] = self._demo()
        return info

    def _schema(self) -> tuple[dict | None, str]:
        """The bundled ERP: create the schema on a new database; refuse one this code does not support."""
        target = self.opts.target
        migrated = None
        before = current_revision(self.db.engine)
        if before is None:
            t0 = time.perf_counter()
            after = migrate(target.database_url)
            migrated = {"from_revision": None, "to_revision": after}
            log.info("created the ERP schema", extra={"revision": after, "seconds": round(time.perf_counter() - t0, 2)})
        return migrated, check_schema(self.db.engine, target).current

    def _release_schema(self) -> tuple[dict | None, str]:
        """The same with the current release's own code: its migrations, its schema check."""
        target, release = self.opts.target, self.release
        migrated = None
        status = release_runner.check_database(target, release)
        if status["current"] is None:
            t0 = time.perf_counter()
            migrated = releases.migrate_with(target, release)
            log.info("created the ERP schema", extra={"revision": migrated["to_revision"], "release": release.version,
                                                     "seconds": round(time.perf_counter() - t0, 2)})
            status = release_runner.check_database(target, release)
        if not status["supported"]:
            raise SchemaMismatch(f"the database schema is not supported by release {release.version}, the current "
                                 f"one: {status['reason']}",
                                 fix="Move the schema with a staged upgrade, or make current a release that "
                                     "supports it ('erpctl release list', 'erpctl release current VERSION').",
                                 schema=status)
        return migrated, status["current"]

    def _demo(self) -> dict:
        """One user per role sharing the demo password; demo data if there are no sales orders yet
        (with the current release's code when there is one)."""
        target = self.opts.target
        login, login_created = config.demo_login(target)
        payload = {"database_url": target.database_url, "field_key": self._key, "username": login["username"],
                   "password": login["password"], "scale": DEMO_SCALE}
        t0 = time.perf_counter()
        if self.release is not None:
            done = release_runner.call(self.release.python, "demo", payload, timeout=3600,
                                       what=f"release {self.release.version}")
        else:  # the same step with the bundled erp_core, in this process
            done = inenv.demo(payload)
        created, existing, seeded = done["users_created"], done["users_existing"], done["seeded"]
        if seeded is not None:
            log.info("seeded demo data", extra={"scale": DEMO_SCALE, "seconds": round(time.perf_counter() - t0, 2),
                                                "release": self.release.version if self.release else __version__})
        return self._demo_result(login, login_created, created, existing, seeded)

    @staticmethod
    def _demo_result(login: dict, login_created: bool, created: list, existing: list, seeded) -> dict:
        password = login["password"]
        note = ""
        if login_created and login["username"] in existing:
            # The database already had the admin, with a password this data directory does not know.
            password, note = None, (f"{config.DEMO_LOGIN_FILE} was missing and user {login['username']!r} already "
                                    "existed: its password is the one it was created with")
            log.warning("demo password unknown", extra={"user": login["username"]})
        return {"username": login["username"], "password": password, "note": note,
                "users": sorted(set(created) | set(existing)), "users_created": created, "seeded": seeded}

    def start(self) -> dict | None:
        """Serve; the release served (version, pid, path) when a release is current, else None."""
        served = self.supervisor.start()
        erp_port = self.supervisor.port
        if self.release is None:
            served = None  # the bundled erp_core, no release
        self.ops.start()
        self.monitoring.start()
        log.info("serving", extra={"erp_port": erp_port, "ops_port": self.ops.port, "host": self.opts.host,
                                  "release": served["version"] if served else None})
        return served

    def stop(self) -> None:
        """Stop the scheduled jobs, the ERP (a child process), the ops console,
        then the engine."""
        if self.monitoring is not None:
            self.monitoring.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.ops is not None:
            self.ops.stop(timeout=STOP_GRACE_SECONDS)
        if self.db is not None:
            self.db.dispose()
        self.ops = self.db = self.monitoring = self.supervisor = None


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
        failpoint("up.prepared")
        served = stack.start()
        if served is not None:
            info["release"] = {k: served[k] for k in ("version", "pid", "path", "python")}
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
