"""Release 1.1's staged migrations: expand (0002), backfill (0003), contract (0004) and back.

The 1.0 database kept in tests/fixtures is upgraded and every old row is filled; release 1.0 itself
(the kept wheel, run in a subprocess) writes into an expanded database and its rows are filled by the
compatibility triggers; the append-only tables still refuse changes; backfill batches fill only
pending rows and checkpoint in their own transaction; and the downgrade gives back exactly 1.0's
schema (catalogue compared with a fresh 0001 database) with every row kept. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from erp_core import backfill, crypto, invariants
from erp_core.db import Database, alembic_config, current_revision, migrate, normalise_url, schema_status
from erp_core.services import billing, purchasing, sales
from tests.conftest import FIELD_KEY, clone_pg_database, need

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WHEEL_1_0 = FIXTURES / "releases" / "erp_controlplane-1.0.0-py3-none-any.whl"
FIXTURE_KEY = "fixture-field-key"
OLD_TABLES = ("sales_orders", "sales_order_lines", "purchase_orders", "purchase_order_lines", "invoices",
              "payments", "journal_entries", "journal_lines", "stock_moves", "stock_levels", "audit_log")


# ---- helpers ------------------------------------------------------------------------------------

def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def catalogue(url: str) -> dict:
    """Everything that makes up a schema, in a comparable form."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            if engine.dialect.name == "sqlite":
                return _sqlite_catalogue(c)
            return _pg_catalogue(c)
    finally:
        engine.dispose()


def _sqlite_catalogue(c) -> dict:
    objects = c.exec_driver_sql("SELECT type, name, tbl_name, sql FROM sqlite_master "
                                "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all()
    out: dict = {"objects": [tuple(r) for r in objects]}
    for (name,) in c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table' "
                                     "AND name NOT LIKE 'sqlite_%' ORDER BY name"):
        indexes = [tuple(r) for r in c.exec_driver_sql(f'PRAGMA index_list("{name}")')]
        out[name] = {
            "columns": [tuple(r) for r in c.exec_driver_sql(f'PRAGMA table_xinfo("{name}")')],
            "indexes": sorted(indexes, key=lambda r: r[1]),
            "index_columns": {r[1]: [tuple(x) for x in c.exec_driver_sql(f'PRAGMA index_xinfo("{r[1]}")')]
                              for r in indexes},
            "foreign_keys": [tuple(r) for r in c.exec_driver_sql(f'PRAGMA foreign_key_list("{name}")')],
        }
    return out


def _pg_catalogue(c) -> dict:
    def rows(sql):
        return [tuple(r) for r in c.exec_driver_sql(sql)]

    return {
        "tables": rows("SELECT table_name, table_type FROM information_schema.tables "
                       "WHERE table_schema = 'public' ORDER BY 1"),
        "columns": rows("SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, "
                        "numeric_precision, numeric_scale, is_nullable, column_default "
                        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 3"),
        "indexes": rows("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                        "ORDER BY 1, 2"),
        "constraints": rows("SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), "
                            "convalidated FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
                            "ORDER BY 1, 2"),
        "triggers": rows("SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled "
                         "FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2"),
        "functions": rows("SELECT proname, pg_get_functiondef(p.oid) FROM pg_proc p "
                          "WHERE pronamespace = 'public'::regnamespace ORDER BY 1"),
        "sequences": rows("SELECT sequence_name, data_type FROM information_schema.sequences "
                          "WHERE sequence_schema = 'public' ORDER BY 1"),
    }


def counts(url: str) -> dict[str, int]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            return {t: c.exec_driver_sql(f"SELECT COUNT(*) FROM {t}").scalar() for t in OLD_TABLES}
    finally:
        engine.dispose()


def check_clean(db: Database) -> None:
    with db.session(write=False) as s:
        found = invariants.check_all(s)
    assert found == [], [v.as_dict() for v in found[:10]]


def assert_all_filled(url: str) -> None:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            for bf in backfill.backfills():
                assert backfill.remaining(c, bf) == 0, bf.name
                nulls = " OR ".join(f"{col} IS NULL" for col in bf.columns)
                assert c.exec_driver_sql(f"SELECT COUNT(*) FROM {bf.table} WHERE {nulls}").scalar() == 0, bf.name
    finally:
        engine.dispose()


def run_release_1_0(url: str, code: str, tmp_path: Path, field_key: str) -> str:
    """Run Python code with release 1.0 (the kept wheel, unpacked) importable as erp_core; its stdout."""
    release = tmp_path / "release-1.0"
    if not release.exists():
        with zipfile.ZipFile(WHEEL_1_0) as z:
            z.extractall(release)
    env = {**os.environ, "PYTHONPATH": str(release), "ERP_URL": url, "ERP_FIELD_KEY": field_key}
    script = textwrap.dedent("""
        import os, erp_core
        assert erp_core.__version__ == "1.0.0", erp_core.__file__
        from erp_core import crypto
        from erp_core.db import Database
        crypto.configure(os.environ["ERP_FIELD_KEY"])
        db = Database(os.environ["ERP_URL"])
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def write_with_1_1(db: Database) -> dict:
    """A foreign-currency purchase and sale through release 1.1's services, delivery split over lots."""
    with db.session(actor="test") as s:
        wh = s.execute(text("SELECT id FROM warehouses ORDER BY id LIMIT 1")).scalar()
        supplier = s.execute(text("SELECT id FROM partners WHERE is_supplier AND active ORDER BY id LIMIT 1")).scalar()
        customer = s.execute(text("SELECT id FROM partners WHERE is_customer AND active ORDER BY id LIMIT 1")).scalar()
        product = s.execute(text("SELECT id FROM products WHERE active ORDER BY id LIMIT 1")).scalar()
        po = purchasing.create(s, {"partner_id": supplier, "warehouse_id": wh, "currency": "EUR",
                                   "exchange_rate": Decimal("7.8"), "lines": [
                                       {"product_id": product, "quantity": Decimal("5"), "unit_price": Decimal("2")}]})
        purchasing.confirm(s, po.id)
        purchasing.receive(s, po.id)
        on_hand = s.execute(text("SELECT quantity FROM stock_levels WHERE product_id = :p AND warehouse_id = :w"),
                            {"p": product, "w": wh}).scalar()
        so = sales.create(s, {"partner_id": customer, "warehouse_id": wh, "currency": "USD",
                              "exchange_rate": Decimal("7.1"), "lines": [
                                  {"product_id": product, "quantity": Decimal(on_hand), "unit_price": Decimal("3")}]})
        sales.confirm(s, so.id)
        sales.deliver(s, so.id)
        inv = sales.invoice(s, so.id)
        billing.register_payment(s, inv.id, Decimal("1.00"))
        return {"sales_order": so.number, "purchase_order": po.number}


# ---- SQLite: the kept 1.0 database ---------------------------------------------------------------

@pytest.fixture
def fixture_db(tmp_path):
    path = tmp_path / "erp.sqlite3"
    shutil.copy(FIXTURES / "erp-1.0.sqlite3", path)
    crypto.configure(FIXTURE_KEY)
    yield f"sqlite:///{path}"
    crypto.configure(FIELD_KEY)


def test_the_1_0_database_upgrades_in_stages_and_rolls_back_to_exactly_1_0(fixture_db, tmp_path):
    url = fixture_db
    before = counts(url)
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    migrate(fresh, "0001")
    assert catalogue(url) == catalogue(fresh)

    db = Database(url)
    try:
        assert migrate(url, "0002") == "0002"
        engine = db.engine
        with engine.connect() as c:
            assert all(backfill.remaining(c, bf) > 0 for bf in backfill.backfills()
                       if c.exec_driver_sql(f"SELECT COUNT(*) FROM {bf.table}").scalar())
        check_clean(db)  # empty new columns are pending, not wrong
        assert migrate(url, "0003") == "0003"
        assert_all_filled(url)
        check_clean(db)
        status = schema_status(engine)
        assert status.supported and "only the contract migration(s) 0004" in status.reason
        written = [write_with_1_1(db)]
        assert migrate(url) == "0004"
        assert schema_status(engine).supported
        check_clean(db)
        written.append(write_with_1_1(db))
        check_clean(db)
        with db.session(write=False) as s:
            lots = s.execute(text("SELECT COUNT(*) FROM lots WHERE number LIKE 'OPEN-%'")).scalar()
            products_moved = s.execute(text("SELECT COUNT(DISTINCT product_id) FROM stock_moves "
                                            "WHERE reference NOT IN (:a, :b, :c, :d)"),
                                       {"a": written[0]["sales_order"], "b": written[0]["purchase_order"],
                                        "c": written[1]["sales_order"], "d": written[1]["purchase_order"]}).scalar()
        assert lots == products_moved  # one opening lot per product with 1.0 moves

        downgrade(url, "0001")
        assert current_revision(engine) == "0001"
    finally:
        db.dispose()
    assert catalogue(url) == catalogue(fresh)
    after = counts(url)
    assert all(after[t] >= before[t] for t in OLD_TABLES)
    assert after["sales_orders"] == before["sales_orders"] + 2 and after["purchase_orders"] == before["purchase_orders"] + 2
    db = Database(url)
    try:
        check_clean(db)  # 1.0's representation: company amounts, one move per lot taken
    finally:
        db.dispose()


def test_each_migration_downgrades_to_the_schema_before_it(fixture_db, tmp_path):
    url = fixture_db
    shapes = {}
    for rev in ("0001", "0002", "0005", "0006", "0007", "0008", "0009", "0010", "0011", "0003", "0004"):
        migrate(url, rev)
        shapes[rev] = catalogue(url)
    for rev in ("0003", "0011", "0010", "0009", "0008", "0007", "0006", "0005", "0002", "0001"):
        downgrade(url, rev)
        assert catalogue(url) == shapes[rev], rev
    assert shapes["0011"] == shapes["0003"]  # the backfill changes data only


def test_a_migration_that_fails_midway_leaves_nothing_behind(fixture_db, monkeypatch):
    """Each migration is one transaction on SQLite too: a failure inside 0002 rolls its DDL back."""
    url = fixture_db
    shape = catalogue(url)
    from erp_core.db import migration_module
    module = migration_module("0002")
    import alembic.op

    real = alembic.op.execute
    calls = {"n": 0}

    def failing(sql, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("killed midway")
        return real(sql, *a, **kw)

    monkeypatch.setattr(alembic.op, "execute", failing)
    with pytest.raises(RuntimeError, match="killed midway"):
        migrate(url, "0002")
    monkeypatch.undo()
    assert calls["n"] == 5 and module is not None
    assert catalogue(url) == shape
    engine = create_engine(url)
    assert current_revision(engine) == "0001"
    engine.dispose()


# ---- release 1.0 writing into an expanded database -------------------------------------------------

SEED_1_0 = """
from erp_core.seed import seed
print(seed(db, 1, rng_seed=7))
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def expanded(request, tmp_path):
    """A 1.0 database (SQLite: the kept one; PostgreSQL: fresh, seeded by 1.0) expanded to 0002."""
    if request.param == "sqlite":
        shutil.copy(FIXTURES / "erp-1.0.sqlite3", tmp_path / "erp.sqlite3")
        url, key = f"sqlite:///{tmp_path / 'erp.sqlite3'}", FIXTURE_KEY
    else:
        template = request.getfixturevalue("pg_template")
        url, key = clone_pg_database(template, "erp_mig", request), FIELD_KEY
        downgrade(url, "0001")
        run_release_1_0(url, SEED_1_0, tmp_path, key)
    migrate(url, "0002")
    crypto.configure(key)
    yield url, key
    crypto.configure(FIELD_KEY)


def test_release_1_0_keeps_working_on_the_expanded_schema_and_its_rows_are_filled(expanded, tmp_path):
    url, key = expanded
    engine = create_engine(normalise_url(url))
    with engine.connect() as c:
        max_ids = {bf.table: c.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {bf.table}").scalar()
                   for bf in backfill.backfills()}
    out = run_release_1_0(url, """
        from erp_core.db import schema_status
        status = schema_status(db.engine)
        assert status.supported, status.reason
        from erp_core.seed import seed
        print(seed(db, 1, rng_seed=11))
        """, tmp_path, key)
    assert "sales_orders" in out
    with engine.connect() as c:
        for bf in backfill.backfills():
            new_rows = c.exec_driver_sql(f"SELECT COUNT(*) FROM {bf.table} WHERE id > {max_ids[bf.table]}").scalar()
            assert new_rows > 0, bf.table
            pending_new = c.exec_driver_sql(f"SELECT COUNT(*) FROM {bf.table} WHERE id > {max_ids[bf.table]} "
                                            f"AND ({bf.pending})").scalar()
            assert pending_new == 0, f"{bf.table}: rows written by 1.0 left unfilled"
        # 1.0 rows are in company currency with equal amounts; moves are in opening lots
        assert c.exec_driver_sql("SELECT COUNT(*) FROM sales_orders WHERE currency <> 'CNY' OR exchange_rate <> 1 "
                                 "OR gross_total_currency <> gross_total").scalar() == 0
        assert c.exec_driver_sql("SELECT COUNT(*) FROM journal_lines WHERE amount_currency <> debit - credit "
                                 "AND currency IS NOT NULL").scalar() == 0
        assert c.execute(text("SELECT COUNT(*) FROM stock_moves m JOIN lots l ON l.id = m.lot_id "
                              "WHERE l.number NOT LIKE 'OPEN-%'")).scalar() == 0
    engine.dispose()
    migrate(url, "0003")
    assert_all_filled(url)
    migrate(url)
    db = Database(url)
    try:
        check_clean(db)
    finally:
        db.dispose()


def test_append_only_tables_refuse_changes_but_a_backfill_may_fill_the_new_columns_once(expanded):
    url, _key = expanded
    engine = create_engine(normalise_url(url))
    refused = (DBAPIError,)
    statements = [
        "UPDATE journal_lines SET debit = debit + 1 WHERE id = (SELECT MIN(id) FROM journal_lines WHERE debit > 0)",
        "UPDATE stock_moves SET quantity = quantity + 1 WHERE id = (SELECT MIN(id) FROM stock_moves)",
        "DELETE FROM journal_lines WHERE id = (SELECT MIN(id) FROM journal_lines)",
        "DELETE FROM stock_moves WHERE id = (SELECT MIN(id) FROM stock_moves)",
        "UPDATE journal_entries SET memo = 'x' WHERE id = (SELECT MIN(id) FROM journal_entries)",
    ]
    for sql in statements:
        with pytest.raises(refused, match="append-only"):
            with engine.begin() as c:
                c.exec_driver_sql(sql)
    jl, sm = (b for b in backfill.backfills() if b.table in ("journal_lines", "stock_moves"))
    with engine.begin() as c:
        first = c.exec_driver_sql("SELECT MIN(id) FROM journal_lines").scalar()
        # filling an empty new column is allowed, together with an unchanged 1.0 column too
        c.exec_driver_sql(f"UPDATE journal_lines SET {jl.set_clause} WHERE id = {first}")
    with pytest.raises(refused, match="append-only"):  # but once filled it cannot change
        with engine.begin() as c:
            c.exec_driver_sql(f"UPDATE journal_lines SET amount_currency = amount_currency + 1 WHERE id = {first}")
    with pytest.raises(refused, match="append-only"):
        with engine.begin() as c:
            c.exec_driver_sql(f"UPDATE journal_lines SET currency = 'USD' WHERE id = {first}")
    with engine.begin() as c:
        assert backfill.run_all(c, sm) > 0 and backfill.remaining(c, sm) == 0
    with pytest.raises(refused, match="append-only"):
        with engine.begin() as c:
            c.exec_driver_sql("UPDATE stock_moves SET lot_id = NULL WHERE id = (SELECT MIN(id) FROM stock_moves)")
    engine.dispose()


def test_run_batch_fills_only_pending_rows_and_checkpoints_in_the_same_transaction(expanded):
    url, _key = expanded
    engine = create_engine(normalise_url(url))
    bf = next(b for b in backfill.backfills() if b.table == "sales_order_lines")
    assert bf.columns == ("unit_price_currency", "net_amount_currency", "tax_amount_currency")
    with engine.begin() as c:
        lo, hi = backfill.key_bounds(c, bf)
        total = backfill.remaining(c, bf)
        assert backfill.checkpoint(c, bf) is None and total == c.exec_driver_sql(
            "SELECT COUNT(*) FROM sales_order_lines").scalar()
        # a row already filled (as 1.1 would write it) is left alone
        c.exec_driver_sql(f"UPDATE sales_order_lines SET unit_price_currency = 1, net_amount_currency = 2, "
                          f"tax_amount_currency = 3 WHERE id = {lo + 1}")
    with engine.connect() as c:  # a batch rolled back leaves no trace, checkpoint included
        with c.begin() as tx:
            assert backfill.run_batch(c, bf, lo - 1, 10).rows == 9
            tx.rollback()
        assert backfill.checkpoint(c, bf) is None and backfill.remaining(c, bf) == total - 1
    with engine.begin() as c:
        first = backfill.run_batch(c, bf, lo - 1, 10)
    keys = [r[0] for r in engine.connect().exec_driver_sql(
        f"SELECT id FROM sales_order_lines ORDER BY id LIMIT 10").all()]
    assert first.last_key == keys[-1] and first.rows == 9
    with engine.connect() as c:
        assert backfill.checkpoint(c, bf) == keys[-1]
        assert backfill.remaining(c, bf) == total - 10
        assert c.exec_driver_sql(f"SELECT unit_price_currency, net_amount_currency FROM sales_order_lines "
                                 f"WHERE id = {lo + 1}").one() == (1, 2)
        filled = c.exec_driver_sql(f"SELECT COUNT(*) FROM sales_order_lines WHERE id <= {keys[-1]} "
                                   "AND net_amount_currency = net_amount").scalar()
        assert filled == 9
    with engine.begin() as c:
        rest = backfill.run_all(c, bf, limit=7)
        assert rest == total - 10 and backfill.remaining(c, bf) == 0
        assert backfill.checkpoint(c, bf) == hi
        assert backfill.rows_done(c, bf) == total - 1
        assert backfill.run_batch(c, bf, hi, 10) == backfill.BatchResult(None, 0)
    engine.dispose()
    migrate(url, "0003")  # finds nothing left to do
    migrate(url)


def test_the_contract_step_refuses_to_run_before_the_backfill_is_complete(expanded):
    url, _key = expanded
    engine = create_engine(normalise_url(url))
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '0003'")  # as if 0003 were skipped
    with pytest.raises(RuntimeError, match="backfill is not complete"):
        migrate(url)
    assert current_revision(engine) == "0003"
    engine.dispose()


def test_the_contracted_schema_refuses_an_empty_new_column(expanded):
    url, _key = expanded
    migrate(url)
    engine = create_engine(normalise_url(url))
    with pytest.raises(DBAPIError, match="(?i)not.null"):
        with engine.begin() as c:
            c.exec_driver_sql("UPDATE sales_orders SET currency = NULL WHERE id = (SELECT MIN(id) FROM sales_orders)")
    with pytest.raises(DBAPIError, match="(?i)not.null"):
        with engine.begin() as c:
            c.exec_driver_sql("INSERT INTO payments (number, invoice_id, amount, paid_on, method, journal_entry_id) "
                              "SELECT 'PAY-X', MIN(id), 1, '2024-01-01', 'bank', 1 FROM invoices")
    with engine.connect() as c:
        assert not inspect(c).has_table("erp_backfill_progress")
    engine.dispose()


# ---- PostgreSQL: a 1.0 database seeded by release 1.0 ------------------------------------------------

@pytest.mark.postgres
def test_postgres_upgrades_a_1_0_database_and_rolls_back_to_exactly_1_0(request, tmp_path):
    template = request.getfixturevalue("pg_template")
    url = clone_pg_database(template, "erp_mig", request)
    downgrade(url, "0001")
    fresh = clone_pg_database(template, "erp_mig", request)
    downgrade(fresh, "0001")
    run_release_1_0(url, SEED_1_0, tmp_path, FIELD_KEY)
    before = counts(url)
    assert before["sales_orders"] > 100
    shapes = {"0001": catalogue(url)}
    assert shapes["0001"] == catalogue(fresh)
    for rev in ("0002", "0005", "0006", "0007", "0008", "0009", "0010", "0011", "0003", "0004"):  # 0005-0011: expand steps, before the backfill
        migrate(url, rev)
        shapes[rev] = catalogue(url)
    assert_all_filled(url)
    assert shapes["0011"] == shapes["0003"]
    db = Database(url)
    try:
        check_clean(db)
        write_with_1_1(db)
        check_clean(db)
    finally:
        db.dispose()
    engine = create_engine(normalise_url(url))
    with engine.connect() as c:  # NOT NULL proper, and the foreign key validated
        nullable = c.exec_driver_sql("SELECT is_nullable FROM information_schema.columns "
                                     "WHERE table_name = 'stock_moves' AND column_name = 'lot_id'").scalar()
        valid = c.exec_driver_sql("SELECT convalidated FROM pg_constraint "
                                  "WHERE conname = 'fk_stock_moves_lot_id_lots'").scalar()
        assert (nullable, valid) == ("NO", True)
    engine.dispose()
    for rev in ("0003", "0011", "0010", "0009", "0008", "0007", "0006", "0005", "0002", "0001"):
        downgrade(url, rev)
        assert catalogue(url) == shapes[rev], rev
    assert catalogue(url) == catalogue(fresh)
    after = counts(url)
    assert after["sales_orders"] == before["sales_orders"] + 1
    db = Database(url)
    try:
        check_clean(db)
    finally:
        db.dispose()
