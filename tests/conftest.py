"""Test databases (SQLite and PostgreSQL, migrated once and cloned per test) and an ERP harness."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid

import pytest
from sqlalchemy import create_engine, text

from erp_core import crypto
from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.db import Database, migrate
from erp_core.domain.permissions import ROLES
from erp_core.services import auth

# Evidence signing keys live in the user's configuration directory (controlplane/evidence_keys.py): the
# tests' keys go to a scratch one (inherited by the erpctl processes they start), removed at the end.
_CONFIG_HOME = tempfile.mkdtemp(prefix="erpctl-test-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME

PG_ADMIN_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE = os.environ.get("ERPCTL_REQUIRE_INTEGRATION") == "1"
FIELD_KEY = "test-field-key"
# Release wheels in tests are signed with the fixture key (tests/fixtures/release-keys), trusted here
# for every erpctl the tests run (in-process or as a child).
RELEASE_SIGNING_KEY = os.path.join(os.path.dirname(__file__), "fixtures", "release-keys", "fixture.key")
os.environ["ERPCTL_RELEASE_TRUSTED_KEYS"] = RELEASE_SIGNING_KEY + ".pub"
PASSWORD = "correct horse battery"
# The suite logs in as admin and finance through the API everywhere (in-process apps, erpctl up's ERP):
# no role needs a second factor unless a test says so (tests/erp_core/test_mfa*.py set the policy).
os.environ["ERP_MFA_ROLES"] = "none"
os.environ["ERPCTL_MFA_ROLES"] = "none"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CONFIG_HOME, ignore_errors=True)


def need(reason: str):
    """Skip for a missing external part; fail instead when integration is required (CI)."""
    if REQUIRE:
        pytest.fail(f"{reason} (ERPCTL_REQUIRE_INTEGRATION=1: integration parts must be present)")
    pytest.skip(reason)


def _pg_admin():
    return create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
                         isolation_level="AUTOCOMMIT")


def reachable_pg_admin():
    """The admin engine of the PostgreSQL server, or the test skipped (failed in CI) naming why not."""
    try:
        admin = _pg_admin()
        with admin.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "not available"
        need(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    return admin


def _pg_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def _seed_users(url: str) -> None:
    crypto.configure(FIELD_KEY)
    db = Database(url)
    with db.session() as s:
        for role in ROLES:
            auth.add_user(s, role, PASSWORD, role, full_name=f"Test {role}")
    db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "erp.sqlite3"
    url = f"sqlite:///{path}"
    migrate(url)
    _seed_users(url)
    return path


@pytest.fixture(scope="session")
def pg_template():
    admin = reachable_pg_admin()
    name = f"erp_tmpl_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    migrate(_pg_url(name))
    _seed_users(_pg_url(name))
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fresh_database_url(backend: str, request, tmp_path) -> str:
    """A migrated database with one user per role, private to the calling test."""
    if backend == "sqlite":
        path = tmp_path / "erp.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return clone_pg_database(request.getfixturevalue("pg_template"), "erp_t", request)


def clone_pg_database(template: str | None, prefix: str, request) -> str:
    """A copy of a PostgreSQL template database (an empty database when template is None), dropped when
    the calling test ends; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _pg_admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return _pg_url(name)


class Erp:
    """The ERP app under test with a client per role."""

    def __init__(self, url: str, backend: str):
        self.backend = backend
        self.url = url
        self.db = Database(url)
        self.app = create_app(Settings(url, field_key=FIELD_KEY, testing=True), self.db)
        self.client = self.app.test_client()
        self._tokens: dict[str, str] = {}
        self._login = threading.Lock()  # threads of one test share one login per role, as one client would

    def token(self, role: str) -> str:
        with self._login:
            if role not in self._tokens:
                r = self.client.post("/api/v1/auth/login", json={"username": role, "password": PASSWORD})
                assert r.status_code == 200, r.json
                self._tokens[role] = r.json["token"]
            return self._tokens[role]

    def req(self, method: str, path: str, *, role: str = "admin", json=None, expect: int | None = None,
            headers=None, query=None):
        h = {"Authorization": f"Bearer {self.token(role)}"} if role else {}
        h.update(headers or {})
        r = self.client.open("/api/v1" + path, method=method, json=json, headers=h, query_string=query)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.get_data(as_text=True)}"
        return r

    def get(self, path, **kw):
        kw.setdefault("expect", 200)
        return self.req("GET", path, **kw).json

    def post(self, path, json=None, **kw):
        kw.setdefault("expect", 201)
        return self.req("POST", path, json=json or {}, **kw).json

    # ---- master data shortcuts (through the API, as a user would) ----
    def warehouse(self, code="WH1"):
        return self.post("/warehouses", {"code": code, "name": f"Warehouse {code}"})["id"]

    def customer(self, code="C1", **kw):
        return self.post("/partners", {"code": code, "name": f"Customer {code}", "is_customer": True, **kw})["id"]

    def supplier(self, code="S1", **kw):
        return self.post("/partners", {"code": code, "name": f"Supplier {code}", "is_supplier": True, **kw})["id"]

    def product(self, sku="P1", price="100.00", tax="VAT13"):
        return self.post("/products", {"sku": sku, "name": f"Product {sku}", "sale_price": price,
                                       "tax_code": tax})["id"]

    def stock_in(self, supplier, warehouse, lines):
        """Buy and receive: lines are (product_id, quantity, unit_price)."""
        po = self.post("/purchase-orders", {"partner_id": supplier, "warehouse_id": warehouse, "lines": [
            {"product_id": p, "quantity": str(q), "unit_price": str(c)} for p, q, c in lines]}, role="purchasing")
        self.post(f"/purchase-orders/{po['id']}/confirm", role="purchasing", expect=200)
        self.post(f"/purchase-orders/{po['id']}/receive", role="warehouse", expect=200)
        return po

    def close(self):
        self.db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    return request.param


@pytest.fixture
def erp(backend, request, tmp_path):
    e = Erp(fresh_database_url(backend, request, tmp_path), backend)
    yield e
    e.close()


@pytest.fixture
def sqlite_erp(request, tmp_path):
    e = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    yield e
    e.close()


# ---- releases: both installed once a session (the upgrade tests, the runbook matrix's UpgradeStuck) ----

RELEASE_OLD = "1.0.0"


@pytest.fixture(scope="session")
def release_store(tmp_path_factory):
    """A data directory holding both releases (the 1.0 wheel kept in tests/fixtures, and a wheel built from
    this tree), installed once; its releases directory."""
    from controlplane import release
    from controlplane.config import Target
    from tests.controlplane.release_helpers import WHEEL_1_0, build_tree_wheel

    base = tmp_path_factory.mktemp("releases-base")
    target = Target(base, f"sqlite:///{base / 'unused.sqlite3'}")
    release.install(target, WHEEL_1_0)
    release.install(target, build_tree_wheel(tmp_path_factory.getbasetemp() / "tree-wheel"))
    return base / release.store.RELEASES_DIR


@pytest.fixture(scope="session")
def pg_1_0_template(release_store):
    """A PostgreSQL database created, seeded and given an admin by release 1.0's own erpctl."""
    import subprocess

    from tests.controlplane.cli_helpers import env as cli_env
    from tests.controlplane.release_helpers import FIXTURE_ADMIN, FIXTURE_KEY

    admin = reachable_pg_admin()
    name = f"erp_v10_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    old = release_store / RELEASE_OLD / "env" / "bin" / "erpctl"
    run_env = cli_env(ERP_FIELD_KEY=FIXTURE_KEY, ERPCTL_DATABASE_URL=_pg_url(name))
    for args, stdin in ((["erp", "migrate"], None), (["erp", "seed", "--scale", "1"], None),
                        (["erp", "user", "add", "admin", "--role", "admin", "--password-stdin"], FIXTURE_ADMIN[1])):
        r = subprocess.run([str(old), *args], input=stdin, capture_output=True, text=True, env=run_env, timeout=600)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
