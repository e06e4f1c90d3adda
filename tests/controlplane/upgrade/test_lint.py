"""The migration linter (controlplane/upgrade/lint/) and `erpctl upgrade lint`.

Each rule gets a small migration written into tmp_path that it must refuse (right rule, line and
severity) and a correct variant it must accept; erp_core's own migrations must lint clean.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from controlplane.upgrade.lint import ERROR, WARNING, Finding, lint_migrations, row_estimates
from erp_core.db import MIGRATIONS_DIR
from erp_core.errors import ValidationFailed
from tests.conftest import clone_pg_database
from tests.controlplane.cli_helpers import erpctl, ok_json

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROJECT_VERSIONS = MIGRATIONS_DIR / "versions"

HEADER = '''"""a test migration"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy import text
from erp_core import backfill

revision = {rev!r}
down_revision = {down!r}
{stage}
'''


def write(directory: Path, rev: str, body: str, *, down: str | None = None, stage: str | None = "backfill",
          name: str | None = None) -> Path:
    stage_line = "" if stage is None else f"stage = {stage!r}"
    path = directory / f"{name or rev}_test.py"
    path.write_text(HEADER.format(rev=rev, down=down, stage=stage_line) + textwrap.dedent(body))
    return path


def line_of(path: Path, needle: str) -> int:
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits} of {path.name}"
    return hits[0]


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]


def show(findings) -> str:
    return "\n".join(f"{f}\n    fix: {f.fix}" for f in findings) or "(no findings)"


def lint_one(tmp_path: Path, body: str, **kw) -> tuple[list[Finding], Path]:
    rows = kw.pop("rows", None)
    path = write(tmp_path, "0001", body, **kw)
    return lint_migrations(tmp_path, rows=rows), path


# ---- rule 1: unbatched full-table updates --------------------------------------------------------

BAD_DATA_CHANGES = {
    "op.execute of a string": '''
        def upgrade():
            op.execute("UPDATE products SET active = true")  # BAD
        ''',
    "op.execute of sa.text, WHERE not on the key": '''
        def upgrade():
            op.execute(sa.text("UPDATE products SET active = true WHERE active = false"))  # BAD
        ''',
    "conn.execute of text()": '''
        def upgrade():
            conn = op.get_bind()
            conn.execute(text("DELETE FROM products"))  # BAD
        ''',
    "op.get_bind().execute, only a lower bound": '''
        def upgrade():
            op.get_bind().execute(sa.text("UPDATE products SET name = upper(name) WHERE id > :lo"), {"lo": 0})  # BAD
        ''',
    "INSERT ... SELECT over a whole table": '''
        def upgrade():
            op.execute("INSERT INTO archive (id, name) SELECT id, name FROM products")  # BAD
        ''',
    "a module constant": '''
        FILL = "UPDATE products " + "SET active = true"

        def upgrade():
            op.execute(FILL)  # BAD
        ''',
    "an f-string with the table interpolated": '''
        TABLE = "products"

        def upgrade():
            for flag in ("true", "false"):
                op.execute(f"UPDATE {TABLE} SET active = {flag}")  # BAD
        ''',
    "OR at the top of the WHERE": '''
        def upgrade():
            op.execute("UPDATE products SET active = true WHERE id BETWEEN :lo AND :hi OR active = false")  # BAD
        ''',
    "TRUNCATE": '''
        def upgrade():
            op.execute("TRUNCATE TABLE products")  # BAD
        ''',
    "table.update() with no where": '''
        products = sa.table("products", sa.column("id"), sa.column("active"))

        def upgrade():
            op.execute(products.update().values(active=True))  # BAD
        ''',
    "sa.update() filtered on a non-key column": '''
        products = sa.table("products", sa.column("id"), sa.column("active"))

        def upgrade():
            stmt = sa.update(products).where(products.c.active == sa.false()).values(active=True)  # BAD
            op.get_bind().execute(stmt)
        ''',
    "sa.delete() with an OR": '''
        t = sa.table("products", sa.column("id"), sa.column("active"))

        def upgrade():
            op.execute(sa.delete(t).where(sa.or_(t.c.id < 10, t.c.active == sa.false())))  # BAD
        ''',
    "insert().from_select() of a whole table": '''
        src = sa.table("products", sa.column("id"), sa.column("name"))
        dst = sa.table("archive", sa.column("id"), sa.column("name"))

        def upgrade():
            op.execute(dst.insert().from_select(["id", "name"], sa.select(src.c.id, src.c.name)))  # BAD
        ''',
}


@pytest.mark.parametrize("body", BAD_DATA_CHANGES.values(), ids=BAD_DATA_CHANGES.keys())
def test_unbatched_data_changes_are_refused(tmp_path, body):
    findings, path = lint_one(tmp_path, body)
    assert [(f.rule, f.severity, f.line) for f in findings] == [
        ("full-table-update", ERROR, line_of(path, "# BAD"))], show(findings)
    f = findings[0]
    assert f.path == str(path) and f.revision == "0001"
    assert "erp_core.backfill.Backfill" in f.fix and "# lint: allow-full-update small-table" in f.fix


GOOD_DATA_CHANGES = {
    "BETWEEN on the key": '''
        def upgrade():
            op.execute(sa.text("UPDATE products SET active = true WHERE id BETWEEN :lo AND :hi"))
        ''',
    "a half-open key range and another filter": '''
        def upgrade():
            op.get_bind().execute(text("UPDATE products SET active = true "
                                       "WHERE id >= :lo AND id < :hi AND (active = false OR name IS NULL)"),
                                  {"lo": 0, "hi": 1000})
        ''',
    "a batching loop with an f-string": '''
        def upgrade():
            for lo in range(0, 10_000, 1000):
                op.execute(f"UPDATE products SET active = true WHERE id > {lo} AND id <= {lo + 1000}")
        ''',
    "a key equality": '''
        def upgrade():
            op.execute("DELETE FROM products WHERE id = :id")
        ''',
    "INSERT ... SELECT of a key range": '''
        def upgrade():
            op.execute("INSERT INTO archive (id, name) SELECT p.id, p.name FROM products p "
                       "WHERE p.id > :lo AND p.id <= :hi")
        ''',
    "update().where(key.between())": '''
        t = sa.table("products", sa.column("id"), sa.column("active"))

        def upgrade():
            op.execute(t.update().where(t.c.id.between(1, 1000)).values(active=True))
        ''',
    "sa.update() with and_() of key bounds": '''
        t = sa.table("products", sa.column("id"), sa.column("active"))

        def upgrade():
            lo, hi = 0, 1000
            stmt = sa.update(t).where(sa.and_(t.c.id >= lo, t.c.id < hi))
            stmt = stmt.where(t.c.active == sa.false())
            op.execute(stmt.values(active=True))
        ''',
    "a marked small fixed table": '''
        def upgrade():
            op.execute("UPDATE tax_rates SET name = upper(name)")  # lint: allow-full-update small-table
        ''',
    "INSERT ... VALUES and bulk_insert": '''
        def upgrade():
            op.execute("INSERT INTO roles (name, description) VALUES ('clerk', 'Clerk')")
            op.bulk_insert(sa.table("roles", sa.column("name")), [{"name": "viewer"}])
        ''',
}


@pytest.mark.parametrize("body", GOOD_DATA_CHANGES.values(), ids=GOOD_DATA_CHANGES.keys())
def test_key_bounded_or_marked_data_changes_are_accepted(tmp_path, body):
    findings, _path = lint_one(tmp_path, body)
    assert findings == [], show(findings)


def test_the_key_is_the_primary_key_the_migrations_declare(tmp_path):
    write(tmp_path, "0001", '''
        def upgrade():
            op.create_table("tax_rates", sa.Column("id", sa.Integer()), sa.Column("code", sa.String(16)),
                            sa.PrimaryKeyConstraint("code", name="pk_tax_rates"))
        ''', stage="expand")
    path = write(tmp_path, "0002", '''
        def upgrade():
            op.execute("UPDATE tax_rates SET name = upper(name) WHERE id BETWEEN :lo AND :hi")  # BAD
            op.execute("UPDATE tax_rates SET name = upper(name) WHERE code BETWEEN :lo AND :hi")
        ''', down="0001")
    findings = lint_migrations(tmp_path)
    assert [(f.rule, f.line) for f in findings] == [("full-table-update", line_of(path, "# BAD"))], show(findings)
    assert "not on a range of the key code" in findings[0].message


def test_a_marker_needs_a_reason_and_a_small_table(tmp_path):
    findings, path = lint_one(tmp_path, '''
        def upgrade():
            op.execute("UPDATE tax_rates SET name = upper(name)")  # lint: allow-full-update
        ''')
    assert [(f.rule, f.line) for f in findings] == [("full-table-update", line_of(path, "allow-full-update"))]
    assert "gives no reason" in findings[0].message

    marked = '''
        def upgrade():
            op.execute("UPDATE tax_rates SET name = upper(name)")  # lint: allow-full-update small-table
        '''
    assert lint_one(tmp_path, marked, rows={"tax_rates": 4})[0] == []
    findings, path = lint_one(tmp_path, marked, rows={"tax_rates": 2_000_000})
    assert [(f.rule, f.severity, f.line) for f in findings] == [("full-table-update", ERROR, line_of(path, "UPDATE"))]
    assert "2,000,000 rows" in findings[0].message


def test_sql_built_at_runtime_is_a_warning_naming_the_line(tmp_path):
    findings, path = lint_one(tmp_path, '''
        def _run(sql):
            op.execute(sql)  # DYNAMIC

        def upgrade():
            op.execute(f"UPDATE products SET active = true WHERE {condition()}")  # WHERE-DYNAMIC
        ''')
    assert [(f.rule, f.severity, f.line) for f in findings] == [
        ("dynamic-sql", WARNING, line_of(path, "# DYNAMIC")),
        ("dynamic-sql", WARNING, line_of(path, "# WHERE-DYNAMIC"))], show(findings)
    assert all("cannot check SQL built at runtime" in f.message for f in findings)
    assert "'sql' is a function parameter" in findings[0].message


# ---- rule 2: rewrites of large tables --------------------------------------------------------------

VOLATILE_DEFAULTS = ['sa.text("now()")', 'sa.text("CURRENT_TIMESTAMP")', "sa.func.clock_timestamp()",
                     'sa.text("gen_random_uuid()")', "sa.func.random()", 'sa.text("nextval(\'product_seq\')")',
                     "sa.text(\"(datetime('now'))\")"]


@pytest.mark.parametrize("default", VOLATILE_DEFAULTS)
def test_a_volatile_default_is_a_warning_without_sizes_and_an_error_on_a_large_table(tmp_path, default):
    body = f'''
        def upgrade():
            op.add_column("products", sa.Column("stamp", sa.DateTime(), server_default={default}))  # BAD
        '''
    findings, path = lint_one(tmp_path, body, stage="expand")
    line = line_of(path, "# BAD")
    assert [(f.rule, f.severity, f.line) for f in findings] == [("volatile-default", WARNING, line)], show(findings)
    assert "size is unknown" in findings[0].message
    findings, _ = lint_one(tmp_path, body, stage="expand", rows={"products": 250_000})
    assert [(f.rule, f.severity, f.line) for f in findings] == [("volatile-default", ERROR, line)], show(findings)
    assert "250,000 rows" in findings[0].message and "backfill" in findings[0].fix.lower()
    assert lint_one(tmp_path, body, stage="expand", rows={"products": 5_000})[0] == []
    findings, _ = lint_one(tmp_path, body, stage="expand", rows={"partners": 5})
    assert [(f.severity, f.line) for f in findings] == [(WARNING, line)] and "no row estimate" in findings[0].message


def test_constant_defaults_and_new_tables_are_accepted(tmp_path):
    findings, _ = lint_one(tmp_path, '''
        def upgrade():
            op.add_column("products", sa.Column("state", sa.String(16), server_default="draft"))
            op.add_column("products", sa.Column("qty", sa.Integer(), server_default=sa.text("0")))
            op.add_column("products", sa.Column("currency", sa.String(3), server_default=sa.text("'EUR'")))
            op.add_column("products", sa.Column("note", sa.String(3), nullable=True))
            op.create_table("lots", sa.Column("id", sa.Integer(), primary_key=True))
            op.add_column("lots", sa.Column("at", sa.DateTime(), server_default=sa.func.now()))
            op.alter_column("lots", "at", type_=sa.Date())
        ''', stage="expand", rows={"products": 10_000_000})
    assert findings == [], show(findings)


def test_type_changes_and_table_rebuilds(tmp_path):
    findings, path = lint_one(tmp_path, '''
        def upgrade():
            op.alter_column("products", "sku", type_=sa.String(128), existing_type=sa.String(64))  # TYPE
            op.execute("ALTER TABLE partners ALTER COLUMN code TYPE varchar(64)")  # SQL-TYPE
            op.execute("ALTER TABLE partners ADD COLUMN token uuid DEFAULT gen_random_uuid()")  # SQL-DEFAULT
            with op.batch_alter_table("invoices", recreate="always") as batch:  # ALWAYS
                batch.create_index("ix_invoices_x", ["number"])
            with op.batch_alter_table("payments") as batch:  # REBUILD
                batch.drop_column("memo")
            with op.batch_alter_table("stock_moves") as batch:
                batch.create_index(batch.f("ix_stock_moves_y"), ["reference"])
        ''', stage="contract", rows={"products": 1_000_000, "partners": 200_000, "invoices": 300_000,
                                    "payments": 400_000, "stock_moves": 900_000})
    assert [(f.rule, f.severity, f.line) for f in findings] == [
        ("column-type-change", ERROR, line_of(path, "# TYPE")),
        ("column-type-change", ERROR, line_of(path, "# SQL-TYPE")),
        ("volatile-default", ERROR, line_of(path, "# SQL-DEFAULT")),
        ("table-rebuild", ERROR, line_of(path, "# ALWAYS")),
        ("table-rebuild", ERROR, line_of(path, "# REBUILD")),
    ], show(findings)
    assert "drop_column" in findings[-1].message and "SQLite" in findings[-1].message


# ---- rule 3: stages ----------------------------------------------------------------------------------

def test_every_migration_declares_a_known_stage(tmp_path):
    findings, _ = lint_one(tmp_path, "def upgrade():\n    pass\n", stage=None)
    assert [(f.rule, f.severity, f.line) for f in findings] == [("stage-declaration", ERROR, 1)]
    findings, path = lint_one(tmp_path, "def upgrade():\n    pass\n", stage="migrate")
    assert [(f.rule, f.line) for f in findings] == [("stage-declaration", line_of(path, "stage = "))]
    assert "'migrate'" in findings[0].message and 'stage = "expand"' in findings[0].fix


def test_ddl_in_a_backfill_migration_is_refused(tmp_path):
    findings, path = lint_one(tmp_path, '''
        def upgrade():
            op.add_column("products", sa.Column("unit_price", sa.Numeric(18, 2)))  # ADD
            op.execute("CREATE INDEX ix_products_unit_price ON products (unit_price)")  # INDEX
            op.execute(sa.text("UPDATE products SET unit_price = price WHERE id BETWEEN :lo AND :hi"))
        ''')
    assert [(f.rule, f.severity, f.line) for f in findings] == [
        ("ddl-in-backfill", ERROR, line_of(path, "# ADD")),
        ("ddl-in-backfill", ERROR, line_of(path, "# INDEX"))], show(findings)
    assert "op.add_column()" in findings[0].message and "expand" in findings[0].fix


def test_data_changes_in_expand_or_contract_are_refused(tmp_path):
    findings, path = lint_one(tmp_path, '''
        BACKFILLS = [backfill.Backfill("products.unit_price", "products", "id", ("unit_price",),
                                       "unit_price IS NULL", "unit_price = price")]  # DECLARED

        def upgrade():
            op.add_column("products", sa.Column("unit_price", sa.Numeric(18, 2)))
            op.execute("UPDATE products SET unit_price = price WHERE id BETWEEN :lo AND :hi")  # BOUNDED
            backfill.run_all(op.get_bind(), BACKFILLS[0])  # RUN
        ''', stage="expand")
    assert [(f.rule, f.severity, f.line) for f in findings] == [
        ("data-in-schema-stage", ERROR, line_of(path, "BACKFILLS = [")),
        ("data-in-schema-stage", ERROR, line_of(path, "# BOUNDED")),
        ("data-in-schema-stage", ERROR, line_of(path, "# RUN"))], show(findings)
    assert all('stage = "backfill"' in f.fix for f in findings)


def test_a_contract_may_check_that_the_backfill_is_done(tmp_path):
    findings, _ = lint_one(tmp_path, '''
        def upgrade():
            conn = op.get_bind()
            left = [bf.name for bf in backfill.backfills() if backfill.remaining(conn, bf)]
            if left:
                raise RuntimeError(f"backfills not done: {left}")
            op.drop_column("products", "price")
        ''', stage="contract")
    assert findings == [], show(findings)


def test_a_backfill_migration_that_declares_and_runs_backfills_is_accepted(tmp_path):
    findings, _ = lint_one(tmp_path, '''
        from erp_core.backfill import Backfill, run_all

        BACKFILLS = [Backfill(name="products.unit_price", table="products", key="id", columns=("unit_price",),
                              pending="unit_price IS NULL", set_clause="unit_price = price")]

        def upgrade():
            for bf in BACKFILLS:
                run_all(op.get_bind(), bf)

        def downgrade():
            pass
        ''')
    assert findings == [], show(findings)


EXPAND = '''
    def upgrade():
        op.add_column("products", sa.Column("unit_price", sa.Numeric(18, 2), nullable=True))
    '''
BACKFILL = '''
    BACKFILLS = [backfill.Backfill("products.unit_price", "products", "id", ("unit_price",),
                                   "unit_price IS NULL", "unit_price = price")]

    def upgrade():
        backfill.run_all(op.get_bind(), BACKFILLS[0])
    '''
CONTRACT = '''
    def upgrade():
        op.drop_column("products", "price")  # DROP
    '''


def test_a_contract_must_come_after_the_backfill_it_depends_on(tmp_path):
    write(tmp_path, "0001", EXPAND, stage="expand")
    contract = write(tmp_path, "0002", CONTRACT, down="0001", stage="contract")
    write(tmp_path, "0003", BACKFILL, down="0002", stage="backfill")
    findings = lint_migrations(tmp_path)
    assert [(f.rule, f.severity, f.path, f.line) for f in findings] == [
        ("stage-order", ERROR, str(contract), line_of(contract, "# DROP"))], show(findings)
    assert "products.price" in findings[0].message and "0003" in findings[0].message


def test_expand_backfill_contract_in_order_is_clean(tmp_path):
    write(tmp_path, "0001", EXPAND, stage="expand")
    write(tmp_path, "0002", BACKFILL, down="0001", stage="backfill")
    write(tmp_path, "0003", CONTRACT, down="0002", stage="contract")
    findings = lint_migrations(tmp_path)
    assert findings == [], show(findings)


def test_the_revision_chain_must_be_one_line(tmp_path):
    write(tmp_path, "0001", "def upgrade():\n    pass\n", stage="expand")
    a = write(tmp_path, "0002", "def upgrade():\n    pass\n", down="0001", stage="expand")
    b = write(tmp_path, "0003", "def upgrade():\n    pass\n", down="0001", stage="expand")
    c = write(tmp_path, "0004", "def upgrade():\n    pass\n", down="0009", stage="expand")
    findings = lint_migrations(tmp_path)
    got = {(Path(f.path).name, f.rule, f.line) for f in findings}
    assert got == {(a.name, "revision-chain", line_of(a, "revision = '0002'")),
                   (b.name, "revision-chain", line_of(b, "revision = '0003'")),
                   (c.name, "revision-chain", line_of(c, "down_revision = ")),
                   (c.name, "revision-chain", line_of(c, "revision = '0004'"))}, show(findings)


def test_a_file_that_does_not_parse_is_an_error(tmp_path):
    findings, path = lint_one(tmp_path, "def upgrade(:\n    pass\n")
    assert [(f.rule, f.severity, f.line) for f in findings] == [("syntax", ERROR, line_of(path, "def upgrade(:"))]


def test_no_migrations_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValidationFailed, match="there is no migrations directory") as err:
        lint_migrations(tmp_path / "missing")
    assert "--versions-dir" in err.value.fix
    with pytest.raises(ValidationFailed, match="holds no Alembic migrations") as err:
        lint_migrations(PROJECT_VERSIONS.parent)  # env.py, but no migration
    assert "versions/" in err.value.fix


# ---- the project's own migrations --------------------------------------------------------------------

def test_the_project_migrations_lint_clean():
    findings = lint_migrations(PROJECT_VERSIONS)
    assert errors(findings) == [], show(findings)


def test_the_project_migrations_lint_clean_against_a_1_0_database(tmp_path):
    db = tmp_path / "erp.sqlite3"
    shutil.copy(FIXTURES / "erp-1.0.sqlite3", db)
    rows, _source = row_estimates(f"sqlite:///{db}")
    findings = lint_migrations(PROJECT_VERSIONS, rows=rows)
    assert findings == [], show(findings)


# ---- row estimates -------------------------------------------------------------------------------------

def _with_stat(db: Path, table: str, rows: int) -> None:
    """ANALYZE, then make sqlite_stat1 claim `rows` rows for `table` (as it would on a large one)."""
    conn = sqlite3.connect(db)
    conn.execute("ANALYZE")
    conn.execute("UPDATE sqlite_stat1 SET stat = ? || ' 1' WHERE tbl = ?", (str(rows), table))
    conn.commit()
    conn.close()


def test_sqlite_estimates_count_rows_or_read_sqlite_stat1(tmp_path):
    db = tmp_path / "erp.sqlite3"
    shutil.copy(FIXTURES / "erp-1.0.sqlite3", db)
    conn = sqlite3.connect(db)
    products = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    conn.close()
    rows, source = row_estimates(f"sqlite:///{db}")
    assert source == "count(*)" and rows["products"] == products > 0 and rows["roles"] == 6
    _with_stat(db, "products", 3_000_000)
    rows, source = row_estimates(f"sqlite:///{db}")
    assert "sqlite_stat1" in source and rows["products"] == 3_000_000


@pytest.mark.postgres
def test_postgres_estimates_read_pg_class(request):
    url = clone_pg_database(request.getfixturevalue("pg_template"), "erp_lint", request)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text("ANALYZE roles"))
    engine.dispose()
    rows, source = row_estimates(url)
    assert source == "pg_class.reltuples" and rows["roles"] == 6


# ---- erpctl upgrade lint ----------------------------------------------------------------------------

def test_cli_lints_the_erp_migrations_clean():
    result = ok_json("upgrade", "lint")
    assert result["errors"] == 0, result["findings"]
    assert [m["revision"] for m in result["migrations"]][0] == "0001"
    assert result["versions_dir"] == str(PROJECT_VERSIONS) and result["row_estimates"] is None
    assert "lint" in erpctl("upgrade", "--help").stdout
    assert " 40  " in erpctl("--help").stdout


BAD_BACKFILL = '''
    def upgrade():
        op.execute("UPDATE products SET active = true")
    '''


def test_cli_refuses_a_bad_migration_naming_file_line_and_fix(tmp_path):
    path = write(tmp_path, "0001", BAD_BACKFILL)
    where = f"{path}:{line_of(path, 'UPDATE products')}"
    r = erpctl("upgrade", "lint", "--versions-dir", tmp_path)
    assert r.returncode == 40, r.stderr
    assert f"{where}: error [full-table-update]" in r.stdout
    assert "fix: Declare the change as erp_core.backfill.Backfill" in r.stdout
    assert "1 error(s), 0 warning(s)" in r.stdout
    assert r.stderr.startswith("erpctl: error: 1 migration error(s): ") and where in r.stderr and "fix:" in r.stderr

    r = erpctl("--json", "upgrade", "lint", "--versions-dir", tmp_path)
    assert r.returncode == 40
    result, problem = json.loads(r.stdout), json.loads(r.stderr)
    assert result["errors"] == 1 and result["findings"][0]["line"] == line_of(path, "UPDATE products")
    assert problem["exit_code"] == 40 and problem["error"]["status"] == 422
    assert problem["error"]["errors"][0]["rule"] == "full-table-update"


def test_cli_on_a_missing_directory_says_which_and_how_to_fix(tmp_path):
    r = erpctl("upgrade", "lint", "--versions-dir", tmp_path / "nowhere")
    assert r.returncode == 2
    assert f"there is no migrations directory at {tmp_path / 'nowhere'}" in r.stderr
    assert "fix: Pass --versions-dir" in r.stderr


def test_cli_sizes_tables_from_the_target_database(tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    path = write(versions, "0001", '''
        def upgrade():
            op.alter_column("products", "sku", type_=sa.String(128))
        ''', stage="expand")
    r = erpctl("upgrade", "lint", "--versions-dir", versions)
    assert r.returncode == 0, r.stderr
    assert f"{path}:{line_of(path, 'alter_column')}: warning [column-type-change]" in r.stdout

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "erp-1.0.sqlite3", data / "erp.sqlite3")
    result = ok_json("upgrade", "lint", "--versions-dir", versions, "--data-dir", data)
    assert result["findings"] == [] and result["row_estimates"]["source"] == "count(*)"

    _with_stat(data / "erp.sqlite3", "products", 5_000_000)
    r = erpctl("upgrade", "lint", "--versions-dir", versions, "--data-dir", data)
    assert r.returncode == 40, r.stdout + r.stderr
    assert "error [column-type-change]" in r.stdout and "5,000,000 rows" in r.stdout
    r = erpctl("upgrade", "lint", "--versions-dir", versions, "--data-dir", data, "--large-rows", "10000000")
    assert r.returncode == 0, r.stdout + r.stderr
