"""`erpctl upgrade` from real release 1.0 (its wheel, its database) to this tree's release, with the
ERP serving and a writer creating orders the whole time; and rollback after writes in the window."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from sqlalchemy import text

from controlplane import release
from controlplane.evidence import EvidenceLog
from controlplane.upgrade import catalogue as cat
from controlplane.upgrade import checks
from controlplane.upgrade import engine as upgrade_engine
from controlplane.upgrade import state as upgrade_state
from erp_core.db import make_engine, migrate
from tests.controlplane.cli_helpers import LineProcess, erpctl_path, free_ports
from tests.controlplane.cli_helpers import env as cli_env

from .bulk import grow_draft_orders
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


@pytest.mark.parametrize("size", ["fixture", "large"])
def test_upgrade_while_a_writer_creates_orders_ends_on_1_1_with_every_order_and_clean_books(site, size, tmp_path):
    if size == "large":
        grown = grow_draft_orders(site.database_url, 200_000 if site.backend == "sqlite" else 60_000)
        assert grown["sales_order_lines"] >= 60_000
    up = Up(site, tmp_path)
    try:
        up.wait_version(OLD)
        _upgrade_under_writes(site, up, tmp_path, watch_progress=size == "large")
    finally:
        up.stop()


def _upgrade_under_writes(site, serving, tmp_path, watch_progress: bool):
    before = old_columns_snapshot(site, site_catalogue(site))
    writer = Writer(serving.url).start()
    seen: list[dict] = []  # what `erpctl upgrade status` showed while the upgrade ran
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            s = upgrade_engine.status(site.target)
            if s.get("stage") == "backfill" and s.get("backfill"):
                seen.append(s["backfill"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = site.ok_json("upgrade", "apply", "--erp-url", serving.url, "--confirm-contract", timeout=900)
    finally:
        watching.set()
        watcher.join()
        writer.stop()
    progress = [b for s in seen for b in s.get("backfills", [])]
    if watch_progress:  # status showed the backfill's rows/s and ETA while it ran
        assert progress and any(b["rows_per_second"] > 0 for b in progress)
    assert all({"rows_done", "rows_total", "rows_per_second", "eta_seconds"} <= set(b) for b in progress)
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


def test_rollback_after_contract_restores_the_backup_and_names_the_writes_it_loses(site, tmp_path):
    from erp_core.app import create_app
    from erp_core.config import Settings

    from .conftest import ADMIN_PASSWORD, FIELD_KEY

    engine = make_engine(site.database_url)
    with engine.connect() as c:
        orders_before = c.execute(text("SELECT count(*) FROM sales_orders")).scalar()
    engine.dispose()
    assert site.ok_json("upgrade", "apply", "--offline", "--confirm-contract")["status"] == "done"
    # 1.1 takes two orders after the upgrade
    app = create_app(Settings(site.database_url, field_key=FIELD_KEY))
    client = app.test_client()
    token = client.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}).json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    partner = next(p["id"] for p in client.get("/api/v1/partners?limit=200", headers=auth).json["items"]
                   if p["is_customer"])
    product = client.get("/api/v1/products?limit=1", headers=auth).json["items"][0]["id"]
    warehouse = client.get("/api/v1/warehouses", headers=auth).json["items"][0]["id"]
    new_ids = []
    for _ in range(2):
        r = client.post("/api/v1/sales-orders", headers=auth, json={
            "partner_id": partner, "warehouse_id": warehouse, "currency": "EUR", "exchange_rate": "7.8",
            "lines": [{"product_id": product, "quantity": "1", "unit_price": "5.00"}]})
        assert r.status_code == 201, r.json
        new_ids.append(r.json["id"])
    # without --restore-backup: refused, naming what a restore would lose
    refused = site.erpctl("--json", "upgrade", "rollback", "--offline")
    assert refused.returncode == 46, refused.stdout + refused.stderr
    from .test_kill_matrix import error_of

    lost = error_of(refused.stderr)["lost"]
    lost_orders = {e["entity_id"] for e in lost["entries"] if e["entity"] == "sales_orders" and e["action"] == "create"}
    assert lost_orders == {str(i) for i in new_ids}
    assert all(e["actor"] != "erpctl-upgrade" for e in lost["entries"])
    r = site.ok_json("upgrade", "rollback", "--offline", "--restore-backup", timeout=600)
    assert r["status"] == "rolled_back" and r["rollback"]["lost"]["count"] == lost["count"]
    assert release.current(site.target).version == OLD
    assert cat.diff(fresh_catalogue(site, "0001", tmp_path), site_catalogue(site)) == []
    engine = make_engine(site.database_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM sales_orders")).scalar() == orders_before
    engine.dispose()
    assert site.ok_json("erp", "check")["ok"] is True


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_without_confirmation_contract_waits_and_a_soak_period_then_runs_it(site):
    r = site.ok_json("upgrade", "apply", "--offline")
    assert r["status"] == "awaiting_contract" and "contract" not in r["completed"]
    status = site.ok_json("upgrade", "status")
    assert status["status"] == "awaiting_contract" and status["stage"] == "contract"
    assert "resume --confirm-contract" in site.ok("upgrade", "status").stdout
    again = site.erpctl("--json", "upgrade", "apply", "--offline")
    assert again.returncode == 41 and "resume" in again.stderr  # one upgrade at a time
    r = site.ok_json("upgrade", "resume", "--offline", "--confirm-contract")
    assert r["status"] == "done" and r["completed"][-1] == "contract"


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_a_soak_period_runs_contract_only_after_the_new_release_served_that_long(site):
    r = site.ok_json("upgrade", "apply", "--offline", "--soak", "3")
    assert r["status"] == "done"
    stages = upgrade_state.history(site.data_dir)[-1].stages
    assert stages["contract"].started_epoch - stages["switch"].finished_epoch >= 3
