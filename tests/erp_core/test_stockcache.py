"""erp_core.services.stockcache (erp_core.ops.repair_stock_cache): the on-hand cache rebuilt from the
done moves. A dry run changes nothing; a rebuild outside maintenance mode is refused; in maintenance it
rewrites exactly the rows that differ and writes each in the audit log; moves that are themselves wrong
are refused; on PostgreSQL a stock move posted at the same moment can neither be lost nor counted twice.
SQLite and PostgreSQL, on the small consistent business of test_invariants."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from erp_core import ops
from erp_core.errors import Conflict, MaintenanceRequired
from erp_core.models import AuditLog, StockLevel
from erp_core.services import stock
from tests.erp_core.test_invariants import check, database, pg_url, run_sql, seed  # noqa: F401 - fixtures

# seed(): A-1 (product 1) 4.5 in MAIN (warehouse 1) and 4 in EAST (2); B-1 (product 2) 5 in MAIN.
TAMPER = ["UPDATE stock_levels SET quantity = 7 WHERE product_id = 1 AND warehouse_id = 1",
          "DELETE FROM stock_levels WHERE product_id = 2 AND warehouse_id = 1",
          "INSERT INTO stock_levels (product_id, warehouse_id, quantity) VALUES (2, 2, 1.25)"]
EXPECTED = [
    {"product_id": 1, "warehouse_id": 1, "ref": "A-1@MAIN", "old": "7.000", "new": "4.500"},
    {"product_id": 2, "warehouse_id": 1, "ref": "B-1@MAIN", "old": None, "new": "5.000"},
    {"product_id": 2, "warehouse_id": 2, "ref": "B-1@EAST", "old": "1.250", "new": "0.000"},
]


def levels(database) -> dict:
    with database.session(write=False) as s:
        return {(r.product_id, r.warehouse_id): r.quantity for r in s.scalars(select(StockLevel))}


def audit_rows(database) -> list[AuditLog]:
    with database.session(write=False) as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.entity == "stock_levels").order_by(AuditLog.id)))


def maintenance(database, enabled: bool) -> None:
    with database.session() as s:
        ops.set_maintenance(s, enabled, "stock cache rebuild")


def repair(database, apply: bool) -> dict:
    with database.session(write=apply, actor="operator") as s:
        return ops.repair_stock_cache(s, apply=apply)


@pytest.fixture
def tampered(database):
    seed(database)
    for sql in TAMPER:
        run_sql(database, sql)
    return database


def test_a_dry_run_lists_the_rows_and_changes_nothing(tampered):
    before, audited = levels(tampered), audit_rows(tampered)

    result = repair(tampered, apply=False)

    assert result["corrections"] == EXPECTED and result["count"] == 3 and result["applied"] is False
    assert levels(tampered) == before and audit_rows(tampered) == audited
    assert {v.check for v in check(tampered)} == {"on_hand_matches_moves"}


def test_a_rebuild_outside_maintenance_is_refused_and_changes_nothing(tampered):
    before = levels(tampered)

    with pytest.raises(MaintenanceRequired) as refused:
        repair(tampered, apply=True)

    assert "maintenance" in refused.value.detail and "erpctl erp maintenance on" in refused.value.fix
    assert refused.value.exit_code == 5
    assert levels(tampered) == before and audit_rows(tampered) == []


def test_a_rebuild_in_maintenance_rewrites_exactly_the_rows_that_differ(tampered):
    before = levels(tampered)
    maintenance(tampered, True)

    result = repair(tampered, apply=True)

    assert result["corrections"] == EXPECTED and result["applied"] is True
    after = levels(tampered)
    assert after == {**before, (1, 1): Decimal("4.500"), (2, 1): Decimal("5.000"), (2, 2): Decimal("0.000")}
    assert check(tampered) == []
    entries = [(a.action, a.entity_id, a.before, a.after["quantity"], a.after["repair_digest"], a.actor)
               for a in audit_rows(tampered)]
    assert entries == [("update", "1,1", {"quantity": "7.000"}, "4.500", result["digest"], "operator"),
                       ("create", "2,1", None, "5.000", result["digest"], "operator"),
                       ("update", "2,2", {"quantity": "1.250"}, "0.000", result["digest"], "operator")]
    again = repair(tampered, apply=True)
    assert again["count"] == 0 and len(audit_rows(tampered)) == 3


def test_moves_that_take_out_more_than_came_in_are_refused(database):
    seed(database)
    run_sql(database, "INSERT INTO stock_moves (product_id, from_warehouse_id, quantity, unit_cost, kind, state, "
                      "reference, created_at, lot_id) VALUES (2, 1, 8, 1, 'delivery', 'done', 'by hand', "
                      "'2024-03-01 00:00:00', 2)")
    maintenance(database, True)
    before = levels(database)

    for apply in (False, True):
        with pytest.raises(Conflict) as refused:
            repair(database, apply=apply)
        assert "B-1@MAIN: the done moves take out 3.000 more than came in" in refused.value.detail
        assert "nothing was changed" in refused.value.fix
    assert levels(database) == before and audit_rows(database) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_a_move_posted_during_the_rebuild_on_postgresql_is_neither_lost_nor_counted_twice(tampered):
    """A writer that has already updated the on-hand row when the rebuild starts: the rebuild waits for
    it (the stock services' lock order) and counts its move; a writer that comes while the rebuild holds
    the tables waits for it and adds its move on top of the rebuilt row. Without the table locks the
    rebuild would overwrite the first writer's on-hand change with a sum that misses its move."""
    maintenance(tampered, True)
    moved, go, rebuilt = threading.Event(), threading.Event(), {}

    def writer():  # transfer 1 of A-1 from MAIN (tampered) to EAST, held open until told to commit
        with tampered.session(actor="warehouse") as s:
            stock.transfer(s, 1, "1", 1, 2, "during the rebuild")
            s.flush()
            moved.set()
            go.wait(30)

    def rebuild():
        rebuilt.update(repair(tampered, apply=True))

    w = threading.Thread(target=writer)
    w.start()
    assert moved.wait(30)
    r = threading.Thread(target=rebuild)
    r.start()
    r.join(1.0)
    assert r.is_alive(), "the rebuild did not wait for the writer that holds an on-hand row"
    waiting = _lock_waits(tampered)
    go.set()
    w.join(30)
    r.join(30)
    assert levels(tampered)[(1, 1)] == Decimal("3.500") and check(tampered) == []
    assert {c["ref"]: c["new"] for c in rebuilt["corrections"]}["A-1@MAIN"] == "3.500"
    # it waits at the first table of the stock services' lock order: the writer holds its product's row
    assert "LOCK TABLE products IN EXCLUSIVE MODE" in waiting

    with tampered.session(write=True, actor="operator") as s:  # the rebuild holds the tables...
        ops.repair_stock_cache(s, apply=True)
        late = threading.Thread(target=lambda: _transfer(tampered))
        late.start()
        late.join(1.0)
        assert late.is_alive(), "a stock move went through while the rebuild held the stock tables"
    late.join(30)  # ...and the late writer goes on once it commits
    assert levels(tampered)[(1, 1)] == Decimal("2.500") and check(tampered) == []


def _transfer(database) -> None:
    with database.session(actor="warehouse") as s:
        stock.transfer(s, 1, "1", 1, 2, "after the rebuild")


def _lock_waits(database) -> str:
    """The statements of this database's sessions that wait for a lock."""
    with database.engine.connect() as c:
        rows = c.execute(text("SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                              "AND wait_event_type = 'Lock'")).scalars().all()
    return "\n".join(rows)
