"""Upgrade tests start from real release 1.0 code and a real 1.0 database.

Both releases are installed once per session (the 1.0 wheel kept in tests/fixtures, and a wheel
built from this tree: tests/conftest.py's release_store, shared with the runbook matrix); each test gets its own data directory whose releases/ links to them, with
1.0 current, a backup repository, and a 1.0 database: a copy of the committed fixture on SQLite,
a clone of a database that release 1.0's own erpctl created and seeded on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import erp_core
from controlplane import release
from controlplane.backup.repository import open_repository
from controlplane.config import Target
from tests.conftest import RELEASE_OLD, clone_pg_database
from tests.controlplane.cli_helpers import erpctl, ok, ok_json
from tests.controlplane.release_helpers import DB_1_0 as FIXTURE_DB
from tests.controlplane.release_helpers import FIXTURE_ADMIN, FIXTURE_KEY

FIELD_KEY = FIXTURE_KEY
ADMIN_PASSWORD = FIXTURE_ADMIN[1]
PASSPHRASE = "upgrade test passphrase"
OLD, NEW = RELEASE_OLD, erp_core.__version__


@dataclass
class Site:
    """One installation under test: its data directory, database, and how to run erpctl on it."""

    data_dir: Path
    database_url: str
    backend: str
    env: dict = field(default_factory=dict)

    @property
    def target(self) -> Target:
        return Target(self.data_dir, self.database_url)

    def args(self, *args) -> list[str]:
        return [*args, "--data-dir", str(self.data_dir), "--database-url", self.database_url]

    def erpctl(self, *args, **kw):
        return erpctl(*self.args(*args), **{**self.env, **kw})

    def ok(self, *args, **kw):
        return ok(*self.args(*args), **{**self.env, **kw})

    def ok_json(self, *args, **kw):
        return ok_json(*self.args(*args), **{**self.env, **kw})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request, tmp_path, release_store) -> Site:
    data = tmp_path / "data"
    (data / "releases").mkdir(parents=True)
    for version in (OLD, NEW):
        os.symlink(release_store / version, data / "releases" / version)
    if request.param == "sqlite":
        shutil.copy(FIXTURE_DB, data / "erp.sqlite3")
        url = f"sqlite:///{data / 'erp.sqlite3'}"
    else:
        url = clone_pg_database(request.getfixturevalue("pg_1_0_template"), "erp_up", request)
    s = Site(data, url, request.param, env={"ERP_FIELD_KEY": FIELD_KEY, "ERPCTL_BACKUP_PASSPHRASE": PASSPHRASE})
    release.set_current(s.target, OLD, check_schema=False)  # the fixture databases are 1.0's own
    open_repository(f"file://{data / 'backups'}", passphrase=PASSPHRASE, create=True, data_dir=data,
                    kdf={"memory_cost": 8192})
    return s


# ---- a writer that keeps creating orders through the ERP's API ---------------------------------------

def http(method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 10):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Writer:
    """Creates sales orders (and confirms, delivers and invoices some) the whole time; remembers every
    order the ERP said it saved. 503 (maintenance) and a refused connection (a restart) are retried."""

    def __init__(self, erp_url: str):
        self.api = erp_url.rstrip("/") + "/api/v1"
        self.saved: list[dict] = []
        self.completed: list[int] = []
        self.refused = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="writer")

    def _call(self, method, path, body=None):
        while not self._stop.is_set():
            try:
                code, data = http(method, self.api + path, body, self.token)
            except (OSError, ValueError):
                time.sleep(0.1)
                continue
            if code == 503:
                self.refused += 1
                time.sleep(0.05)
                continue
            if code == 401:  # a restarted ERP of another release keeps tokens (same database); log in again
                self._login()
                continue
            return code, data
        return None, None

    def _login(self):
        code, data = http("POST", self.api + "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
        assert code == 200, data
        self.token = data["token"]

    def start(self) -> "Writer":
        self._login()
        _, partners = http("GET", self.api + "/partners?limit=200", token=self.token)
        self.customer = next(p["id"] for p in partners["items"] if p["is_customer"])
        _, products = http("GET", self.api + "/products?limit=5", token=self.token)
        self.product = products["items"][0]["id"]
        _, warehouses = http("GET", self.api + "/warehouses", token=self.token)
        self.warehouse = warehouses["items"][0]["id"]
        self._thread.start()
        return self

    def _run(self):
        n = 0
        while not self._stop.is_set():
            code, order = self._call("POST", "/sales-orders", {
                "partner_id": self.customer, "warehouse_id": self.warehouse,
                "lines": [{"product_id": self.product, "quantity": "1"}]})
            if code is None:
                break
            if code != 201:
                self.errors.append(f"create: {code} {order}")
                continue
            self.saved.append({"id": order["id"], "number": order["number"], "gross_total": order["gross_total"]})
            n += 1
            if n % 4 == 0:
                steps = [("confirm", 200), ("deliver", 200), ("invoice", 201)]
                for step, want in steps:
                    code, body = self._call("POST", f"/sales-orders/{order['id']}/{step}")
                    if code != want:
                        if code not in (None, 409):
                            self.errors.append(f"{step}: {code} {body}")
                        break
                else:
                    self.completed.append(order["id"])
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)

    def missing(self) -> list[dict]:
        """Orders the ERP said it saved that it does not have now."""
        self._stop.clear()
        out = []
        for o in self.saved:
            code, body = self._call("GET", f"/sales-orders/{o['id']}")
            if code != 200 or body["number"] != o["number"] or body["gross_total"] != o["gross_total"]:
                out.append({**o, "now": code})
        self._stop.set()
        return out
