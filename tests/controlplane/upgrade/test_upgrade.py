"""`erpctl upgrade` from real release 1.0 (its wheel, its database) to this tree's release, with the
ERP serving and a writer creating orders the whole time; and rollback after writes in the window."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import text

from controlplane import release
from controlplane.evidence import EvidenceLog
from controlplane.upgrade import catalogue as cat
from controlplane.upgrade import checks
from erp_core.db import make_engine, migrate
from tests.controlplane.cli_helpers import LineProcess, erpctl_path, free_ports
from tests.controlplane.cli_helpers import env as cli_env

from .conftest import NEW, OLD, Writer, http


def fresh_catalogue(site, revision: str, tmp_path) -> dict:
    """The catalogue of a new database migrated by this tree's code to `revision`."""
    if site.backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'fresh-{revision}.sqlite3'}"
    else:
        from tests.conftest import _pg_admin, _pg_url
        import uuid

        name = f"erp_fresh_{uuid.uuid4().hex[:8]}"
        admin = _pg_admin()
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = _pg_url(name)
    migrate(url, revision)
    engine = make_engine(url)
    try:
        return cat.catalogue(engine)
    finally:
        engine.dispose()
        if site.backend != "sqlite":
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def site_catalogue(site) -> dict:
    engine = make_engine(site.database_url)
    try:
        return cat.catalogue(engine)
    finally:
        engine.dispose()


def old_columns_snapshot(site, old_catalogue: dict) -> dict:
    """Checksums of every table's 1.0 columns (what 1.0 sees)."""
    engine = make_engine(site.database_url)
    try:
        cols = {t: [c["name"] for c in v["columns"]] for t, v in old_catalogue["tables"].items()}
        return checks.snapshot(engine, checks.table_specs(engine, list(cols), only=cols))
    finally:
        engine.dispose()


class Up:
    """`erpctl up` on the site: it serves the current release and follows switches."""

    def __init__(self, site, tmp_path):
        self.erp_port, self.ops_port = free_ports(2)
        self.proc = LineProcess([erpctl_path(), "--json", "up", *site.args(), "--erp-port", self.erp_port,
                                 "--ops-port", self.ops_port], tmp_path / "up.log",
                                env=cli_env(**site.env))
        self.url = f"http://127.0.0.1:{self.erp_port}"

    def wait_version(self, version: str, timeout: float = 90) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.proc.poll() is None, self.proc.log[-3000:]
            try:
                code, body = http("GET", self.url + "/healthz", timeout=2)
                if code == 200 and body.get("version") == version:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the ERP did not serve {version}:\n{self.proc.log[-3000:]}")

    def stop(self):
        self.proc.proc.terminate()
        try:
            self.proc.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.proc.kill()


@pytest.fixture
def serving(site, tmp_path):
    up = Up(site, tmp_path)
    try:
        up.wait_version(OLD)
        yield up
    finally:
        up.stop()


def test_plan_shows_each_stage_with_lock_rows_time_rollback_and_the_point_of_no_return(site):
    p = site.ok_json("upgrade", "plan")
    assert (p["from_version"], p["to_version"], p["from_revision"]) == (OLD, NEW, "0001")
    assert [s["stage"] for s in p["stages"]] == ["preflight", "backup", "expand", "backfill", "verify", "switch",
                                                 "contract"]
    assert p["point_of_no_return"] == "contract"
    contract = p["stages"][-1]
    assert contract.get("point_of_no_return") and "restore the pre-upgrade backup" in contract["rollback"]
    backfill = next(s for s in p["stages"] if s["stage"] == "backfill")
    engine = make_engine(site.database_url)
    with engine.connect() as c:
        lines = c.execute(text("SELECT count(*) FROM sales_order_lines")).scalar()
    engine.dispose()
    assert backfill["rows"] >= lines > 0 and backfill["tables"]
    assert all(s["lock"] and s["rollback"] for s in p["stages"])
    human = site.ok("upgrade", "plan").stdout
    assert "point of no return" in human


def test_upgrade_while_a_writer_creates_orders_ends_on_1_1_with_every_order_and_clean_books(site, serving, tmp_path):
    before = old_columns_snapshot(site, site_catalogue(site))
    writer = Writer(serving.url).start()
    try:
        r = site.ok_json("upgrade", "apply", "--erp-url", serving.url, "--confirm-contract", timeout=600)
    finally:
        writer.stop()
    assert r["status"] == "done", r
    assert r["completed"] == ["preflight", "backup", "expand", "backfill", "verify", "switch", "contract"]
    assert len(writer.saved) > 5 and not writer.errors, writer.errors
    serving.wait_version(NEW)
    code, ready = http("GET", serving.url + "/readyz")
    assert code == 200, ready
    assert writer.missing() == []
    # the exact schema of a fresh 1.1 database, nothing left over, books clean
    assert cat.diff(fresh_catalogue(site, "head", tmp_path), site_catalogue(site)) == []
    assert site.ok_json("erp", "check")["ok"] is True
    # every row 1.0 had is still there with the same values (the writer only added)
    after = old_columns_snapshot(site, {"tables": {t: {"columns": [{"name": c} for c in v["columns"]]}
                                                  for t, v in before.items()}})
    for table in ("journal_lines", "stock_moves", "invoices", "payments", "journal_entries"):
        lost = [p for p in checks.compare(before, after) if p["table"] == table and "rows missing" in p["problem"]]
        assert not lost, lost
    assert release.current(site.target).version == NEW
    assert site.ok_json("evidence", "verify")["ok"] is True
    kinds = [r["kind"] for r in EvidenceLog(site.data_dir).records()]
    assert "upgrade.apply" in kinds and "release_switch" in kinds
    status = site.ok_json("upgrade", "status")
    assert status["status"] == "none" and status["last"]["status"] == "done"


def test_rollback_after_writes_in_the_window_keeps_them_and_1_0_serves_them(site, serving, tmp_path):
    writer = Writer(serving.url).start()
    try:
        r = site.ok_json("upgrade", "apply", "--erp-url", serving.url, timeout=600)
        assert r["status"] == "awaiting_contract", r
        serving.wait_version(NEW)
        # 1.1 serves now: the writer keeps going, and a foreign-currency order is written by 1.1
        n_before = len(writer.saved)
        import time

        deadline = time.monotonic() + 30
        while len(writer.saved) < n_before + 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        code, usd = http("POST", serving.url + "/api/v1/sales-orders", {
            "partner_id": writer.customer, "warehouse_id": writer.warehouse, "currency": "USD",
            "exchange_rate": "7.1", "lines": [{"product_id": writer.product, "quantity": "2", "unit_price": "10.00"}]},
            token=writer.token)
        assert code == 201, usd
        assert usd["currency"] == "USD" and usd["gross_total"] != usd.get("gross_total_currency")
        rb = site.ok_json("upgrade", "rollback", "--erp-url", serving.url, timeout=600)
    finally:
        writer.stop()
    assert rb["status"] == "rolled_back", rb
    assert len(writer.saved) > n_before and not writer.errors, writer.errors
    serving.wait_version(OLD)
    code, ready = http("GET", serving.url + "/readyz")
    assert code == 200, ready
    assert writer.missing() == []  # 1.0 serves every order, those written by 1.1 included
    code, back = http("GET", serving.url + f"/api/v1/sales-orders/{usd['id']}", token=writer.token)
    assert code == 200 and back["gross_total"] == usd["gross_total"]  # its company-currency amounts
    assert cat.diff(fresh_catalogue(site, "0001", tmp_path), site_catalogue(site)) == []
    old_erpctl = site.data_dir / "releases" / OLD / "env" / "bin" / "erpctl"
    check = subprocess.run([str(old_erpctl), "--json", "erp", "check", *site.args()],
                           capture_output=True, text=True, env=cli_env(**site.env), timeout=300)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"] is True, check.stdout + check.stderr
    assert release.current(site.target).version == OLD
