"""The upgrade's proofs: schema catalogues, key-range checksums, and the backfill controller."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from controlplane.upgrade import catalogue as cat
from controlplane.upgrade import checks
from controlplane.upgrade.backfill import Controller, sqlite_retry_gap
from erp_core.db import make_engine, migrate
from tests.conftest import _pg_url, reachable_pg_admin

FIXTURE_DB = Path(__file__).parents[2] / "fixtures" / "erp-1.0.sqlite3"


@pytest.fixture(params=["sqlite", "postgresql"])
def two_databases(request, tmp_path):
    """Two fresh databases at schema 0001, as URLs."""
    if request.param == "sqlite":
        return [f"sqlite:///{tmp_path / f'db{i}.sqlite3'}" for i in range(2)]
    admin = reachable_pg_admin()
    import uuid

    names = [f"erp_cat_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.connect() as c:
        for n in names:
            c.execute(text(f'CREATE DATABASE "{n}"'))

    def drop():
        with admin.connect() as c:
            for n in names:
                c.execute(text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return [_pg_url(n) for n in names]


def test_catalogues_of_two_databases_at_one_revision_are_equal_and_a_change_is_named(two_databases):
    a, b = two_databases
    for url in (a, b):
        migrate(url, "0001")
    ea, eb = make_engine(a), make_engine(b)
    try:
        assert cat.diff(cat.catalogue(ea), cat.catalogue(eb)) == []
        with eb.begin() as c:
            c.execute(text("ALTER TABLE warehouses ADD COLUMN note VARCHAR(20)"))
            c.execute(text("CREATE TABLE _alembic_tmp_products (id INTEGER PRIMARY KEY)"))
        differences = cat.diff(cat.catalogue(ea), cat.catalogue(eb))
        assert any("warehouses" in d for d in differences), differences
        assert any("_alembic_tmp_products" in d and "unexpected" in d for d in differences), differences
        assert cat.leftovers(cat.catalogue(eb)) == ["_alembic_tmp_products"]
        assert cat.leftovers(cat.catalogue(ea)) == []
    finally:
        ea.dispose()
        eb.dispose()


def test_the_committed_1_0_database_has_the_catalogue_of_revision_0001(tmp_path):
    copy = tmp_path / "erp.sqlite3"
    shutil.copy(FIXTURE_DB, copy)
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    migrate(fresh, "0001")
    e1, e2 = make_engine(f"sqlite:///{copy}"), make_engine(fresh)
    try:
        assert cat.diff(cat.catalogue(e2), cat.catalogue(e1)) == []
    finally:
        e1.dispose()
        e2.dispose()


def test_key_range_checksums_name_the_table_and_range_that_changed(tmp_path):
    copy = tmp_path / "erp.sqlite3"
    shutil.copy(FIXTURE_DB, copy)
    engine = make_engine(f"sqlite:///{copy}")
    try:
        specs = checks.table_specs(engine, ["sales_order_lines", "sales_orders", "no_such_table"])
        assert [s.table for s in specs] == ["sales_order_lines", "sales_orders"]
        before = checks.snapshot(engine, specs, range_keys=100)
        assert checks.compare(before, checks.snapshot(engine, specs, range_keys=100)) == []
        assert before["sales_orders"]["rows"] == 163
        with engine.begin() as c:
            c.execute(text("UPDATE sales_orders SET notes = 'changed' WHERE id = 150"))
            c.execute(text("DELETE FROM sales_order_lines WHERE id = (SELECT max(id) FROM sales_order_lines)"))
        problems = checks.compare(before, checks.snapshot(engine, specs, range_keys=100))
        assert {"table": "sales_orders", "keys": "100-199", "problem": "values changed"} in problems
        assert any(p["table"] == "sales_order_lines" and "rows before" in p["problem"] for p in problems)
        # restricted to some columns, a change elsewhere is not seen
        only = checks.table_specs(engine, ["sales_orders"], only={"sales_orders": ["number", "state"]})
        assert only[0].columns == ("number", "state")
    finally:
        engine.dispose()


def test_the_controller_shrinks_batches_when_the_canary_waits_and_grows_them_when_there_is_room():
    ctl = Controller(budget=0.5, batch=1000)                         # PostgreSQL: a batch takes 45 % of the budget
    ctl.update(rows=1000, seconds=0.01, canary_waits=[0.001])        # fast batches, no waiting: grow, at most x2
    assert ctl.batch == 2000
    ctl.update(rows=2000, seconds=0.02, canary_waits=[0.002])
    assert ctl.batch == 4000 and ctl.pause == ctl.min_pause
    ctl.update(rows=4000, seconds=1.0, canary_waits=[0.45])          # slow, and a writer waited 450 ms: shrink
    assert ctl.batch < 1000 and ctl.pause > ctl.min_pause and ctl.share < ctl.batch_share
    for _ in range(40):                                              # quiet again: back to the full share
        ctl.update(rows=ctl.batch, seconds=ctl.batch / 100_000, canary_waits=[0.01])
    assert ctl.share == ctl.batch_share and abs(ctl.batch - 100_000 * 0.5 * 0.45) <= 1
    ctl.start_backfill()                                             # another table: start small, measure afresh
    assert ctl.batch == ctl.min_batch and ctl.rate == 0
    slow = Controller(budget=0.1, batch=50_000)
    slow.update(rows=50_000, seconds=1.0, canary_waits=[])           # 50 k rows/s: a batch must take <= 45 ms
    assert slow.batch == 2250

    # SQLite: a waiting writer does not queue, its busy handler tries at 0, 1, 3, 8, 18, 33, 53, 78, 103 ms;
    # one that began waiting when a 40 ms batch began is asleep from 33 to 53 ms when the batch commits,
    # so the pause after that batch must outlast 20 ms
    assert [sqlite_retry_gap(s / 1000) * 1000 for s in (0.5, 2, 30, 40, 60, 90, 500)] == [1, 2, 15, 20, 25, 25, 100]
    lite = Controller.for_dialect("sqlite", 0.1, batch=1000)
    lite.update(rows=1000, seconds=0.040, canary_waits=[0.03])
    assert lite.pause == 0.020 + lite.margin
    assert lite.batch == int(1000 / 0.040 * 0.1 * 0.20)              # 20 ms of the 100 ms budget
    rng = random.Random(1)
    pauses = [lite.next_pause(rng) for _ in range(200)]              # jittered, never below the gap
    assert min(pauses) >= lite.pause and max(pauses) <= lite.pause * (1 + lite.jitter) and len(set(pauses)) > 100
    lite.update(rows=750, seconds=0.070, canary_waits=[0.09])        # a writer waited 90 ms: smaller, longer pause
    assert lite.batch < 750 and lite.pause >= 0.025 + lite.margin + 0.005 and lite.shrinks == 1
