"""Probes: small checks that the ERP really works, each timed and recorded.

    readyz            GET <erp>/readyz answers 200 with ready=true
    business          log in as the probe user, read one sales order and the trial balance
                      (whose totals must balance) through the REST API
    db_integrity      SQLite: PRAGMA quick_check is "ok"; PostgreSQL: a catalog query answers
    backup_freshness  the last successful backup (results 'backup.create') is younger than a limit
    disk_headroom     the data directory's filesystem has more free bytes than a limit

`run(probe, data_dir)` times a probe, never raises, and records its result under 'probe.<name>'
(ok, duration in seconds, detail) with controlplane.results; the exporter reads it from there.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from erp_core import ops

from .. import http, results

log = logging.getLogger("controlplane.probes")

NAMES = ("readyz", "business", "db_integrity", "backup_freshness", "disk_headroom")
RESULT_PREFIX = "probe."
BACKUP_KEY = "backup.create"
DEFAULT_BACKUP_MAX_AGE_SECONDS = 26 * 3600  # a daily backup, with two hours of slack
DEFAULT_DISK_MIN_FREE_BYTES = 1 << 30
HTTP_TIMEOUT = 5.0
# The runbook an on-call engineer opens when a probe fails (runbooks/<name>.md).
RUNBOOKS = {
    "readyz": "ErpNotReady",
    "business": "ErpProbeFailing",
    "db_integrity": "ErpProbeFailing",
    "backup_freshness": "BackupTooOld",
    "disk_headroom": "DiskSpaceLow",
}


_last_ok: dict[int, bool] = {}


class ProbeFailed(Exception):
    """The probe ran and found a problem (the message says which)."""


@dataclass
class ProbeResult:
    probe: str
    ok: bool
    duration: float
    detail: str
    at: float

    def as_dict(self) -> dict:
        return asdict(self)


def run(probe, data_dir=None) -> ProbeResult:
    """Run a probe, time it, record the result (when data_dir is given); never raises."""
    at = time.time()
    t0 = time.perf_counter()
    try:
        detail, ok = probe.check(), True
    except ProbeFailed as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # noqa: BLE001 - an unexpected error is a failed probe, with its reason
        detail, ok = f"{exc.__class__.__name__}: {exc}", False
    duration = time.perf_counter() - t0
    result = ProbeResult(probe.name, ok, round(duration, 6), detail, at)
    # Log when a probe starts or stops failing, not at every run.
    was_ok = _last_ok.get(id(probe))
    _last_ok[id(probe)] = ok
    if not ok and was_ok is not False:
        log.warning("probe failed", extra={"probe": probe.name, "detail": detail})
    elif ok and was_ok is False:
        log.info("probe recovered", extra={"probe": probe.name, "detail": detail})
    if data_dir is not None:
        results.record(data_dir, RESULT_PREFIX + probe.name, ok, duration=result.duration, detail=detail)
    return result


# ---- HTTP -----------------------------------------------------------------------------------

def http_json(method: str, url: str, body=None, token: str | None = None, timeout: float = HTTP_TIMEOUT):
    """controlplane.http.request, with nothing answering as a failed probe (ProbeFailed)."""
    try:
        return http.request(method, url, body, token=token, timeout=timeout)
    except http.Unreachable as exc:
        raise ProbeFailed(str(exc)) from None


# ---- the probes -------------------------------------------------------------------------------

class ReadyzProbe:
    name = "readyz"

    def __init__(self, erp_url: str, timeout: float = HTTP_TIMEOUT):
        self.url = erp_url.rstrip("/") + "/readyz"
        self.timeout = timeout

    def check(self) -> str:
        status, body = http_json("GET", self.url, timeout=self.timeout)
        if status != 200 or not (isinstance(body, dict) and body.get("ready")):
            checks = body.get("checks") if isinstance(body, dict) else None
            raise ProbeFailed(f"/readyz answered {status}: not ready ({json.dumps(checks, default=str)})")
        return "ready"


class BusinessProbe:
    """A business transaction as a user would do it. The token is kept between runs (logging in
    every time would fill the audit log) and renewed when the ERP no longer accepts it."""

    name = "business"

    def __init__(self, erp_url: str, credentials, timeout: float = 10.0):
        """credentials: a callable returning {"username", "password"} (read when logging in)."""
        self.api = erp_url.rstrip("/") + "/api/v1"
        self.credentials = credentials
        self.timeout = timeout
        self._token: str | None = None

    def _login(self) -> str:
        login = self.credentials()
        status, body = http_json("POST", self.api + "/auth/login",
                                 {"username": login["username"], "password": login["password"]}, timeout=self.timeout)
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            raise ProbeFailed(f"login as {login['username']!r} failed: {http.describe(status, body)}")
        return body["token"]

    def _get(self, path: str):
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._login()
            status, body = http_json("GET", self.api + path, token=self._token, timeout=self.timeout)
            if status == 401 and attempt == 1:
                self._token = None  # expired or revoked: log in again, once
                continue
            if status != 200:
                raise ProbeFailed(f"GET {path} answered {http.describe(status, body)}")
            return body
        raise AssertionError("unreachable")

    def check(self) -> str:
        page = self._get("/sales-orders?limit=1")
        items = page.get("items") if isinstance(page, dict) else None
        if items is None:
            raise ProbeFailed("GET /sales-orders did not answer a page of orders")
        order = None
        if items:
            order = self._get(f"/sales-orders/{int(items[0]['id'])}")
            if order.get("id") != items[0]["id"]:
                raise ProbeFailed(f"GET /sales-orders/{items[0]['id']} answered another order")
        tb = self._get("/reports/trial-balance")
        totals = (tb or {}).get("totals") or {}
        if str(totals.get("debit")) != str(totals.get("credit")):
            raise ProbeFailed(f"the trial balance does not balance: debit {totals.get('debit')} != "
                              f"credit {totals.get('credit')}")
        what = f"order {order['number']}" if order else "no sales orders yet"
        return f"read {what} and the trial balance (debit = credit = {totals.get('debit')})"


class DbIntegrityProbe:
    """SQLite: PRAGMA quick_check on a read-only connection; PostgreSQL: a catalog query."""

    name = "db_integrity"

    def __init__(self, database_url: str, timeout: float = 30.0):
        from sqlalchemy.engine import make_url

        self.url = make_url(database_url)
        self.timeout = timeout
        self._engine = None

    def check(self) -> str:
        if self.url.get_backend_name() == "sqlite":
            return self._sqlite()
        return self._catalog()

    def _sqlite(self) -> str:
        path = self.url.database
        if not path or path == ":memory:" or not Path(path).exists():
            raise ProbeFailed(f"no SQLite database at {path}")
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=self.timeout)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
        if rows != ["ok"]:
            raise ProbeFailed("PRAGMA quick_check: " + "; ".join(map(str, rows[:5])))
        return "quick_check ok"

    def _catalog(self) -> str:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self._engine is None:
            self._engine = create_engine(ops.normalise_url(self.url.render_as_string(hide_password=False)),
                                         poolclass=NullPool, connect_args={"connect_timeout": 10})
        with self._engine.connect() as c:
            tables = c.execute(text("SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                                    "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                                    "AND c.relkind = 'r'")).scalar()
            revision = ops.current_revision(c)
        if not tables:
            raise ProbeFailed("the database has no tables in its schema")
        if revision is None:
            raise ProbeFailed("the database has no ERP schema revision (alembic_version): not migrated")
        return f"catalog ok ({tables} tables)"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class BackupFreshnessProbe:
    name = "backup_freshness"

    def __init__(self, data_dir, max_age_seconds: float = DEFAULT_BACKUP_MAX_AGE_SECONDS):
        self.data_dir = data_dir
        self.max_age = float(max_age_seconds)

    def check(self) -> str:
        last = results.read(self.data_dir).get(BACKUP_KEY + ".last_success")
        if not last:
            raise ProbeFailed("no successful backup recorded yet")
        age = time.time() - last.at
        if age > self.max_age:
            raise ProbeFailed(f"the last successful backup is {age / 3600:.1f} h old "
                              f"(limit {self.max_age / 3600:.1f} h; at {last.at_iso})")
        return f"last successful backup {age / 3600:.1f} h ago"


class DiskHeadroomProbe:
    name = "disk_headroom"

    def __init__(self, data_dir, min_free_bytes: int = DEFAULT_DISK_MIN_FREE_BYTES):
        self.data_dir = data_dir
        self.min_free = int(min_free_bytes)

    def check(self) -> str:
        usage = psutil.disk_usage(str(self.data_dir))
        if usage.free < self.min_free:
            raise ProbeFailed(f"{usage.free / 2**30:.2f} GiB free on the data directory's filesystem "
                              f"(limit {self.min_free / 2**30:.2f} GiB)")
        return f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB"
