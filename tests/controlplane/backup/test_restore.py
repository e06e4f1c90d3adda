"""Fail-closed restore (controlplane/backup/restore.py, `erpctl backup restore`) on SQLite and
PostgreSQL: the swap happens under a running ERP, which then serves the restored data; a backup
that fails verification (a corrupted chunk, a broken invariant) is refused and the live data is
untouched; --target leaves the live data alone; the maintenance flag is cleared on every failure
path; a restore killed at any point is finished or rolled back by the next run; a backup taken
while a writer keeps creating orders restores to a state whose invariants are clean. Fault tests
end with the real `erpctl backup verify` and `erpctl evidence verify` telling the truth."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from controlplane import erp_admin, results
from controlplane.backup import restore as R
from controlplane.errors import RestoreFailed
from controlplane.evidence import EvidenceLog
from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.db import Database
from erp_core.serve import Server
from tests.conftest import FIELD_KEY, PASSWORD
from tests.controlplane.cli_helpers import erpctl

from .conftest import PASSPHRASE
from .test_verify import break_stock, cli, cli_json, corrupt_shared_chunk, evidence_ok, live_fingerprint, new_repo

BUSINESS = ("sales_orders", "sales_order_lines", "invoices", "payments", "journal_entries", "journal_lines",
            "stock_levels", "stock_moves", "partners", "products")


class LiveErp:
    """The ERP served by waitress on a free port over the live database, as `erpctl up` does."""

    def __init__(self, target):
        self.db = Database(target.database_url)
        self.server = Server(create_app(Settings(target.database_url, field_key=FIELD_KEY), self.db),
                             threads=8).start()
        self.url = self.server.url
        self.http = requests.Session()
        self._token = None

    def login(self):
        r = self.http.post(self.url + "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD},
                           timeout=30)
        assert r.status_code == 200, r.text
        self._token = r.json()["token"]

    def req(self, method, path, **kw):
        if self._token is None:
            self.login()
        return self.http.request(method, self.url + "/api/v1" + path, timeout=60,
                                 headers={"Authorization": f"Bearer {self._token}"}, **kw)

    def total(self, what="sales-orders") -> int:
        r = self.req("GET", f"/{what}?limit=1")
        assert r.status_code == 200, r.text
        return r.json()["total"]

    def readyz(self) -> int:
        return self.http.get(self.url + "/readyz", timeout=30).status_code

    def close(self):
        self.server.stop()
        self.db.dispose()


@pytest.fixture
def live(request):
    made = []

    def start(target):
        e = LiveErp(target)
        made.append(e)
        return e

    yield start
    for e in made:
        e.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_target(request):
    return request.getfixturevalue("seeded_target" if request.param == "sqlite" else "pg_seeded_target")


def first_ids(target) -> dict:
    engine = create_engine(target.database_url)
    with engine.connect() as c:
        customer = c.execute(text("SELECT id FROM partners WHERE is_customer ORDER BY id LIMIT 1")).scalar()
        wh, products = None, []
        for w, p in c.execute(text("SELECT warehouse_id, product_id FROM stock_levels WHERE quantity >= 50 "
                                   "ORDER BY warehouse_id, product_id")):
            if wh is None:
                wh = w
            if w == wh:
                products.append(p)
    engine.dispose()
    return {"customer": customer, "warehouse": wh, "products": products[:10]}


def maintenance(target) -> dict:
    return erp_admin.set_maintenance(target, None)


def business(fp: dict) -> dict:
    return {t: fp[t] for t in BUSINESS}


def pg_databases(target, pattern: str) -> list[str]:
    """Databases of this test (named after its live database, or scratch ones) matching a pattern."""
    from sqlalchemy.engine import make_url

    live = make_url(target.database_url).database
    engine = create_engine(target.database_url)
    with engine.connect() as c:
        names = c.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": pattern}).scalars().all()
    engine.dispose()
    return [n for n in names if n.startswith(live) or n.startswith("erp_verify_")]


def verify_tells(target, repo_url, expect_rc: int, *args) -> dict:
    r = cli(target, repo_url, "backup", "verify", *args)
    assert r.returncode == expect_rc, r.stdout + r.stderr
    return cli_json(r)


# ---- the swap ------------------------------------------------------------------------------------

def test_restore_swaps_in_and_the_running_erp_serves_the_restored_data(any_target, file_repo_url, live):
    erp = live(any_target)
    before = erp.total()
    repo = new_repo(file_repo_url, any_target.data_dir)
    m = repo.create_backup(any_target)
    ids = first_ids(any_target)
    created = erp.req("POST", "/sales-orders", json={"partner_id": ids["customer"], "warehouse_id": ids["warehouse"],
                                                    "lines": [{"product_id": ids["products"][0], "quantity": "2"}]})
    assert created.status_code == 201, created.text
    assert erp.total() == before + 1

    n = cli_json(cli(any_target, file_repo_url, "backup", "restore", m.id[:12], "--dry-run"))["count"]
    assert n >= 2  # the order and its line
    r = cli(any_target, file_repo_url, "backup", "restore", m.id[:12], "--yes", "--discard-writes", str(n))
    assert r.returncode == 0, r.stdout + r.stderr
    out = cli_json(r)
    assert out["ok"] and out["backup"] == m.id and out["verification"]["passed_level"] == 3

    # the ERP that kept running serves the restored data, and is out of maintenance
    deadline = time.monotonic() + 20
    while erp.readyz() != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert erp.readyz() == 200
    erp.login()
    assert erp.total() == before
    assert erp.req("GET", f"/sales-orders/{created.json()['id']}").status_code == 404
    assert business(live_fingerprint(any_target, repo)) == business(m.tables)
    assert maintenance(any_target)["enabled"] is False
    assert R.read_state(any_target)["phase"] == "done"
    assert erp_admin.check(any_target)["ok"]

    entry = results.read(any_target.data_dir)["backup.restore"]
    assert entry.ok and entry.value("backup") == m.id and entry.value("duration") > 0
    rec = [x for x in EvidenceLog(any_target.data_dir).records() if x["kind"] == "backup.restore"][-1]
    assert rec["data"]["result"] == "swapped" and rec["outcome"] == "ok"
    if any_target.backend == "postgresql":
        assert pg_databases(any_target, "%restore%") == []  # the old database dropped once swapped
    else:
        assert not list((any_target.data_dir / "restore").glob("2*"))  # the copy is gone
    verify_tells(any_target, file_repo_url, 0, m.id)
    evidence_ok(any_target)


@pytest.mark.postgres
def test_pg_keep_previous_keeps_the_replaced_database(pg_seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, pg_seeded_target.data_dir)
    m = repo.create_backup(pg_seeded_target)
    r = cli(pg_seeded_target, file_repo_url, "backup", "restore", m.id, "--yes", "--keep-previous")
    assert r.returncode == 0, r.stdout + r.stderr
    kept = cli_json(r)["previous_database"]
    assert kept and pg_databases(pg_seeded_target, "%_pre_restore_%") == [kept]
    engine = create_engine(pg_seeded_target.database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE "{kept}"'))
    engine.dispose()


# ---- refused: the live data is untouched ---------------------------------------------------------

def test_corrupted_chunk_restore_is_refused_and_live_untouched(seeded_target, file_repo_url, live):
    erp = live(seeded_target)
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    first = repo.create_backup(seeded_target)
    second = repo.create_backup(seeded_target)
    chunk = corrupt_shared_chunk(repo, first, second)
    fp_before = live_fingerprint(seeded_target)

    r = cli(seeded_target, file_repo_url, "backup", "restore", first.id, "--yes")
    assert r.returncode == 29, r.stdout + r.stderr
    err = json.loads(r.stderr.strip().splitlines()[-1])
    assert chunk in err["error"]["detail"] and "untouched" in err["error"]["detail"]
    assert live_fingerprint(seeded_target) == fp_before
    assert maintenance(seeded_target)["enabled"] is False and erp.readyz() == 200
    assert R.read_state(seeded_target)["phase"] == "refused"
    assert results.read(seeded_target.data_dir)["backup.restore"].ok is False

    out = verify_tells(seeded_target, file_repo_url, 28, first.id, second.id, "--level", "1")
    for b in out["backups"]:
        assert any(p["chunk"] == chunk and {first.id, second.id} <= set(p["backups"])
                   for p in b["levels"][0]["problems"])
    evidence_ok(seeded_target)


def test_backup_breaking_an_invariant_is_refused_and_live_untouched(any_target, file_repo_url):
    invariant = break_stock(any_target)
    repo = new_repo(file_repo_url, any_target.data_dir)
    m = repo.create_backup(any_target)
    engine = create_engine(any_target.database_url)  # the live data is mended meanwhile
    with engine.begin() as c:
        row = c.execute(text("SELECT product_id, warehouse_id FROM stock_levels ORDER BY product_id, warehouse_id "
                             "LIMIT 1")).one()
        c.execute(text("UPDATE stock_levels SET quantity = quantity - 7 WHERE product_id = :p AND warehouse_id = :w"),
                  {"p": row.product_id, "w": row.warehouse_id})
    engine.dispose()
    assert erp_admin.check(any_target)["ok"]
    fp_before = live_fingerprint(any_target)

    r = cli(any_target, file_repo_url, "backup", "restore", m.id, "--yes")
    assert r.returncode == 29, r.stdout + r.stderr
    assert invariant in r.stderr and "L3" in r.stderr
    assert live_fingerprint(any_target) == fp_before
    assert maintenance(any_target)["enabled"] is False
    assert erp_admin.check(any_target)["ok"]
    if any_target.backend == "postgresql":
        assert pg_databases(any_target, "%restore%") == []

    out = verify_tells(any_target, file_repo_url, 28, m.id)
    assert out["backups"][0]["failed_level"] == 3 and invariant in out["backups"][0]["failure"]
    evidence_ok(any_target)


# ---- --target ------------------------------------------------------------------------------------

def test_target_dir_restores_for_inspection_and_leaves_live_alone(any_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url, any_target.data_dir)
    m = repo.create_backup(any_target)
    erp_admin.set_maintenance(any_target, False)
    fp_before = live_fingerprint(any_target)
    live_stat = any_target.sqlite_path.stat() if any_target.sqlite_path else None
    into = tmp_path / "inspect"

    r = cli(any_target, file_repo_url, "backup", "restore", m.id, "--target", into)
    assert r.returncode == 0, r.stdout + r.stderr
    out = cli_json(r)
    placed = Path(out["path"])
    assert placed.parent == into and placed.stat().st_size > 0
    assert [p.name for p in into.iterdir()] == [placed.name]
    if any_target.backend == "sqlite":
        from controlplane.backup.fingerprint import fingerprint

        engine = create_engine(f"sqlite:///{placed}")
        with engine.connect() as c:
            assert fingerprint(c, key=repo.fingerprint_key) == m.tables
        engine.dispose()
        assert any_target.sqlite_path.stat().st_mtime_ns == live_stat.st_mtime_ns
    else:
        assert placed.name == "erp.pgdump" and pg_databases(any_target, "erp_verify_%") == []
    assert live_fingerprint(any_target) == fp_before
    assert R.read_state(any_target) is None

    again = cli(any_target, file_repo_url, "backup", "restore", m.id, "--target", into)
    assert again.returncode == 29 and "already exists" in again.stderr
    evidence_ok(any_target)


# ---- failure paths clear the maintenance flag ----------------------------------------------------

def _repo_and_backup(target, url):
    repo = new_repo(url, target.data_dir)
    return repo, repo.create_backup(target)


def test_failure_before_the_swap_rolls_back_and_clears_maintenance(any_target, file_repo_url, monkeypatch):
    repo, m = _repo_and_backup(any_target, file_repo_url)
    fp_before = live_fingerprint(any_target)
    monkeypatch.setenv("ERPCTL_FAILPOINTS", "restore.before_swap=errno:ENOSPC")  # the disk fills up there
    with pytest.raises(RestoreFailed, match="rolled back"):
        R.restore(any_target, repo, m.id)
    assert maintenance(any_target)["enabled"] is False
    # untouched but for the maintenance switch itself (system_settings, and its audit records)
    assert business(live_fingerprint(any_target)) == business(fp_before)
    state = R.read_state(any_target)
    assert state["phase"] == "rolled_back" and "No space" in state["error"]
    if any_target.backend == "postgresql":
        assert pg_databases(any_target, "%restore%") == []
    assert results.read(any_target.data_dir)["backup.restore"].ok is False
    evidence_ok(any_target)


def test_swap_failure_rolls_back_and_keeps_the_operators_maintenance(seeded_target, file_repo_url, monkeypatch):
    repo, m = _repo_and_backup(seeded_target, file_repo_url)
    erp_admin.set_maintenance(seeded_target, True, "quarterly close")
    fp_before = live_fingerprint(seeded_target)

    def broken_swap(copy, live):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(R, "_sqlite_swap", broken_swap)
    with pytest.raises(RestoreFailed, match="disk I/O error"):
        R.restore(seeded_target, repo, m.id)
    assert maintenance(seeded_target) == {"enabled": True, "reason": "quarterly close"}
    assert business(live_fingerprint(seeded_target)) == business(fp_before)
    monkeypatch.undo()

    R.restore(seeded_target, repo, m.id)  # and a successful restore also puts it back as it was
    assert maintenance(seeded_target) == {"enabled": True, "reason": "quarterly close"}


def test_a_second_restore_is_refused_while_one_runs(seeded_target, file_repo_url, tmp_path, monkeypatch):
    repo, m = _repo_and_backup(seeded_target, file_repo_url)
    paused = tmp_path / "paused-before-swap"
    monkeypatch.setenv("ERPCTL_FAILPOINTS", f"restore.before_swap=pause:{paused}")
    errors: list = []
    t = threading.Thread(target=lambda: R.restore(seeded_target, repo, m.id))
    t.start()
    try:
        deadline = time.monotonic() + 120
        while not paused.exists() and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paused.exists(), "the restore never reached the swap"
        assert maintenance(seeded_target)["enabled"] is True, "the ERP is read-only just before the swap"
        r = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--yes")
        errors.append(r)
    finally:
        paused.unlink(missing_ok=True)
        t.join(60)
    assert errors[0].returncode == 30 and "another restore" in errors[0].stderr
    assert R.read_state(seeded_target)["phase"] == "done"
    assert maintenance(seeded_target)["enabled"] is False


# ---- killed at any point: the next run finishes or rolls back -------------------------------------

@pytest.mark.parametrize("point", ["before_swap", "after_swap"])
def test_restore_killed_is_finished_or_rolled_back_by_the_next_run(any_target, file_repo_url, point):
    repo, m = _repo_and_backup(any_target, file_repo_url)
    engine = create_engine(any_target.database_url)
    with engine.begin() as c:  # the live data moves on after the backup
        c.execute(text("UPDATE partners SET address = 'after the backup' WHERE is_customer"))
    engine.dispose()
    fp_live = live_fingerprint(any_target)

    proc = erpctl("backup", "restore", m.id, "--yes", "--data-dir", any_target.data_dir, "--database-url",
                  any_target.database_url, "--repo", file_repo_url, timeout=300,
                  ERPCTL_BACKUP_PASSPHRASE=PASSPHRASE, ERPCTL_FAILPOINTS=f"restore.{point}=kill")
    assert proc.returncode == -9, proc.stderr
    state = R.read_state(any_target)
    assert state["phase"] == ("maintenance" if point == "before_swap" else "swapped")
    assert maintenance(any_target)["enabled"] is True, "killed with the ERP read-only"

    r = cli(any_target, file_repo_url, "backup", "restore", "--recover")
    assert r.returncode == 0, r.stdout + r.stderr
    done = cli_json(r)["recovered"]
    assert done["interrupted_phase"] == state["phase"]
    assert done["result"] == ("rolled_back" if point == "before_swap" else "completed")
    assert maintenance(any_target)["enabled"] is False
    if point == "before_swap":
        assert business(live_fingerprint(any_target)) == business(fp_live)
    else:
        assert business(live_fingerprint(any_target, repo)) == business(m.tables)
    if any_target.backend == "postgresql":
        assert pg_databases(any_target, "%restore%") == []
    assert R.read_state(any_target)["phase"] in ("rolled_back", "done")
    assert cli_json(cli(any_target, file_repo_url, "backup", "restore", "--recover"))["recovered"] is None

    verify_tells(any_target, file_repo_url, 0, m.id, "--level", "1")
    evidence_ok(any_target)


# ---- a backup taken under write load restores clean ------------------------------------------------

class Writer(threading.Thread):
    """Creates, confirms, delivers and invoices sales orders through the HTTP API until stopped; keeps
    what the ERP acknowledged: orders and invoices as (id, number), in order."""

    def __init__(self, erp: LiveErp, ids: dict):
        super().__init__(daemon=True)
        self.erp, self.ids = erp, ids
        self.stop = threading.Event()
        self.done = 0
        self.errors: list[str] = []
        self.orders: list[tuple[int, str]] = []
        self.invoices: list[tuple[int, str]] = []

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            product = self.ids["products"][n % len(self.ids["products"])]
            try:
                r = self.erp.req("POST", "/sales-orders", json={
                    "partner_id": self.ids["customer"], "warehouse_id": self.ids["warehouse"],
                    "lines": [{"product_id": product, "quantity": "1"}], "notes": f"writer {n}"})
                if r.status_code != 201:
                    self.errors.append(f"create {r.status_code}")
                    continue
                oid = r.json()["id"]
                self.orders.append((oid, r.json()["number"]))
                for step, ok in (("confirm", 200), ("deliver", 200), ("invoice", 201)):
                    r = self.erp.req("POST", f"/sales-orders/{oid}/{step}", json={})
                    if r.status_code != ok:
                        self.errors.append(f"{step} {r.status_code}: {r.text[:200]}")
                        break
                else:
                    self.invoices.append((r.json()["id"], r.json()["number"]))
                    self.done += 1
            except requests.RequestException as exc:
                self.errors.append(str(exc))


def test_backup_taken_under_write_load_restores_with_invariants_clean(any_target, file_repo_url, live):
    m = backup_under_write_load(any_target, file_repo_url, live, check_invariants=True)
    assert m.invariants == []


def test_an_in_place_backup_under_write_load_restores_with_invariants_clean(seeded_target, file_repo_url, live,
                                                                            monkeypatch):
    """Read in place by the sealing processes (as a large SQLite database is) while orders keep coming:
    the restored copy is one consistent state (L3 runs the invariants on it)."""
    from controlplane.backup.repository import tuning

    monkeypatch.setattr(tuning, "SEAL_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(tuning, "SEAL_RANGE", 64 << 10)  # many ranges: orders are written between them
    m = backup_under_write_load(seeded_target, file_repo_url, live)
    assert m.details["capture"].startswith("in place") and m.invariants is None


def backup_under_write_load(any_target, file_repo_url, live, **backup_options):
    """A backup taken while a writer creates orders, restored: its orders and no others, invariants clean,
    every verification level and the evidence log telling the truth. Returns its manifest."""
    erp = live(any_target)
    start_total = erp.total()
    repo = new_repo(file_repo_url, any_target.data_dir)
    writer = Writer(erp, first_ids(any_target))
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while writer.done < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.done >= 5, writer.errors[:5]
        m = repo.create_backup(any_target, **backup_options)  # while the writer goes on
        during = writer.done
        deadline = time.monotonic() + 60
        while writer.done < during + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.stop.set()
        writer.join(60)
    assert writer.done >= during + 5, writer.errors[:5]
    final_total = erp.total()
    captured = m.tables["sales_orders"]["rows"]
    assert start_total < captured < final_total

    n = cli_json(cli(any_target, file_repo_url, "backup", "restore", m.id, "--dry-run"))["count"]
    r = cli(any_target, file_repo_url, "backup", "restore", m.id, "--yes", "--discard-writes", str(n))
    assert r.returncode == 0, r.stdout + r.stderr
    assert cli_json(r)["loss"]["discarded"] == n
    check = erp_admin.check(any_target)
    assert check["ok"], check["violations"][:5]
    erp.login()
    assert erp.total() == captured
    assert business(live_fingerprint(any_target, repo)) == business(m.tables)
    verify_tells(any_target, file_repo_url, 0, m.id)
    evidence_ok(any_target)
    return m
