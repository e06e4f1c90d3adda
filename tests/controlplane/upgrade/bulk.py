"""A large ERP 1.0 database from a small one: draft sales orders (with their lines) doubled by SQL.

Draft orders touch neither stock nor the ledger, so the copies keep every invariant (order totals
equal their lines). Used by the upgrade tests and by bench/upgrade.py.
"""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text

from erp_core.db import normalise_url


def _columns(engine, table: str, drop: set[str]) -> list[str]:
    return [c["name"] for c in inspect(engine).get_columns(table) if c["name"] not in drop]


def grow_draft_orders(url: str, order_lines: int) -> dict:
    """Double the draft sales orders until there are at least `order_lines` sales order lines."""
    engine = create_engine(normalise_url(url))
    try:
        order_cols = _columns(engine, "sales_orders", {"id", "number", "external_id"})
        line_cols = _columns(engine, "sales_order_lines", {"id", "order_id"})
        oc, lc = ", ".join(order_cols), ", ".join(line_cols)
        with engine.begin() as c:
            while True:
                lines = c.execute(text("SELECT count(*) FROM sales_order_lines")).scalar()
                if lines >= order_lines:
                    break
                off = c.execute(text("SELECT max(id) FROM sales_orders")).scalar()
                drafts = c.execute(text("SELECT count(*) FROM sales_orders WHERE state = 'draft'")).scalar()
                if not drafts:
                    raise ValueError("the database has no draft sales order to copy")
                c.execute(text(f"INSERT INTO sales_orders (id, number, external_id, {oc}) "
                               f"SELECT id + :off, 'BULK-' || CAST(id + :off AS VARCHAR(20)), NULL, {oc} "
                               "FROM sales_orders WHERE state = 'draft' AND id <= :off"), {"off": off})
                c.execute(text(f"INSERT INTO sales_order_lines (order_id, {lc}) "
                               f"SELECT l.order_id + :off, {', '.join('l.' + x for x in line_cols)} "
                               "FROM sales_order_lines l JOIN sales_orders o ON o.id = l.order_id "
                               "WHERE o.state = 'draft' AND o.id <= :off ORDER BY l.id"), {"off": off})
            if engine.dialect.name == "postgresql":
                for t in ("sales_orders", "sales_order_lines"):
                    c.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))"))
            counts = {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in ("sales_orders", "sales_order_lines")}
        if engine.dialect.name == "sqlite":
            with engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts
    finally:
        engine.dispose()
