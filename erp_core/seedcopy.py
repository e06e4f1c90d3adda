"""Copies of a seeded year: how `seed` reaches large scales in minutes.

    mark = Mark.take(db)                 # before the services seed a year (the template)
    ...                                  # erp_core.seed creates it through the services
    copy(db, mark, Mark.take(db), 9)     # nine more businesses with the same year

The template is made the slow way (every document through the services, so every amount, tax,
cost and journal line comes from the domain rules). Each copy is the template's rows again, with
new ids, codes and document numbers: its own partners, products, lots, orders, invoices, payments,
journal entries, stock moves and stock levels, on the same dates, referring to the shared
warehouses, accounts and tax rates. Each copy balances on its own, so the whole passes every
invariant as the template does (erp_core.invariants; `erpctl erp check`).

Rows pass as they are stored (no ORM, no type conversion): executemany on SQLite, COPY on
PostgreSQL, one transaction per copy. Document numbers continue each series without gaps and the
series counters (doc_sequences) and PostgreSQL id sequences are moved past the copies. References
to document numbers inside text (a journal entry's source and memo, a move's reference) follow.
The audit log is not copied (the seed writes none).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Integer, func, select, text

from .db import Database
from .domain.lots import OPENING_PREFIX
from .models import Base, DocSequence

# What a seeded year consists of; everything else (warehouses, accounts, tax rates, users) is shared.
COPIED = ("partners", "products", "price_lists", "price_list_items", "lots", "purchase_orders",
          "purchase_order_lines", "sales_orders", "sales_order_lines", "journal_entries", "journal_lines",
          "invoices", "payments", "stock_moves", "stock_levels", "reorder_rules", "stocktakes", "stocktake_lines")
NUMBERED = {"number"}                                    # series + digits, e.g. SO000042
TEXT_REFERENCES = {"source", "memo", "reference"}        # may name document numbers
CODES = {("partners", "code"): "partners", ("price_lists", "name"): "partners", ("products", "sku"): "products"}
_DOC_NUMBER = re.compile(r"\b([A-Z]{2,4})(\d{6,})\b")
_CODE_DIGITS = re.compile(r"\d+")

SQLITE_CACHE_KIB = 256 * 1024
Progress = Callable[[str, int, int | None], None]  # (phase, done, total)


@dataclass(frozen=True)
class Mark:
    """The largest id of each copied table and the last number of each series, at one moment."""
    ids: dict[str, int]
    series: dict[str, int]

    @classmethod
    def take(cls, db: Database) -> "Mark":
        tables = _tables()
        with db.session(write=False) as s:
            ids = {t.name: int(s.scalar(select(func.max(t.c.id))) or 0) for t in tables if "id" in t.c}
            series = {r.name: int(r.last) for r in s.execute(select(DocSequence.name, DocSequence.last))}
        return cls(ids, series)


def _tables():
    return [t for t in Base.metadata.sorted_tables if t.name in COPIED]


class _Offsets:
    """How far copy k moves the template's ids and numbers."""

    def __init__(self, before: Mark, after: Mark, k: int):
        self.before, self.k = before, k
        self.ids = {t: k * (after.ids[t] - before.ids.get(t, 0)) for t in after.ids}
        self.series = {n: k * (last - before.series.get(n, 0)) for n, last in after.series.items()}

    def fk(self, table: str) -> Callable:
        floor, off = self.before.ids.get(table, 0), self.ids[table]
        return lambda v: v + off if v is not None and v > floor else v

    def number(self, value: str) -> str:
        if value.startswith(OPENING_PREFIX):  # a product's opening lot: OPEN-<product id>
            return OPENING_PREFIX + str(self.fk("products")(int(value[len(OPENING_PREFIX):])))
        fmt, tokens = _parsed(value)
        if not tokens:
            return value
        series, floor = self.series, self.before.series
        return fmt.format(*[n + series.get(name, 0) if n > floor.get(name, 0) else n for name, n in tokens])

    def code(self, table: str) -> Callable:
        off = self.ids[table]
        return lambda v: _CODE_DIGITS.sub(lambda m: f"{int(m.group(0)) + off:0{len(m.group(0))}d}", v, count=1)


@functools.lru_cache(maxsize=1 << 20)
def _parsed(value: str) -> tuple[str, tuple]:
    """A text as a format string with a slot for each document number in it, and those numbers
    ((series, number), ...): "Goods received PO000007" -> ("Goods received PO{:06d}", (("PO", 7),))."""
    fmt, tokens, at = [], [], 0
    for m in _DOC_NUMBER.finditer(value):
        fmt += [value[at:m.start()].replace("{", "{{").replace("}", "}}"), m.group(1), f"{{:0{len(m.group(2))}d}}"]
        tokens.append((m.group(1), int(m.group(2))))
        at = m.end()
    fmt.append(value[at:].replace("{", "{{").replace("}", "}}"))
    return "".join(fmt), tuple(tokens)


def _column_transforms(table, offsets: _Offsets) -> list[tuple[int, Callable, str | None]]:
    """(column index, function, SQL expression or None) for each column a copy changes; a table whose
    changes all have an SQL expression (ids and references only) is copied inside the database."""
    out = []
    for i, col in enumerate(table.c):
        fks = [fk.column.table.name for fk in col.foreign_keys if fk.column.table.name in COPIED]
        if col.name == "id" and isinstance(col.type, Integer):
            off = offsets.ids[table.name]
            out.append((i, lambda v, off=off: v + off, f"id + {off}"))
        elif fks:
            floor, off = offsets.before.ids.get(fks[0], 0), offsets.ids[fks[0]]
            out.append((i, offsets.fk(fks[0]), f"CASE WHEN {col.name} > {floor} THEN {col.name} + {off} "
                                               f"ELSE {col.name} END"))
        elif (table.name, col.name) in CODES:
            out.append((i, offsets.code(CODES[(table.name, col.name)]), None))
        elif col.name in NUMBERED or col.name in TEXT_REFERENCES:
            out.append((i, lambda v, f=offsets.number: f(v) if v else v, None))
    return out


def _template_range(table, before: Mark, after: Mark) -> str:
    """SQL: this row is one of the template's (stock_levels: of the template's products)."""
    if "id" in table.c:
        return f"id > {before.ids.get(table.name, 0)} AND id <= {after.ids[table.name]}"
    key = next(c for c in table.c if any(fk.column.table.name in COPIED for fk in c.foreign_keys))
    parent = next(iter(key.foreign_keys)).column.table.name
    return f"{key.name} > {before.ids.get(parent, 0)} AND {key.name} <= {after.ids[parent]}"


def _template_rows(conn, table, before: Mark, after: Mark) -> list[tuple]:
    """The template's rows as stored (DB-API values, nothing converted)."""
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(f"SELECT {', '.join(c.name for c in table.c)} FROM {table.name} "
                    f"WHERE {_template_range(table, before, after)} ORDER BY 1")
        return cur.fetchall()
    finally:
        cur.close()


def _resealer(conn, table) -> Callable | None:
    """For a table with encrypted columns: (template row, copy) -> the copy's values sealed for its own row id
    (they are bound to their row: erp_core.models.sealing), in the format the database takes."""
    from . import crypto
    from .models.base import Encrypted
    from .models.sealing import read_context

    cols = [(i, c.name) for i, c in enumerate(table.c) if isinstance(c.type, Encrypted)]
    if not cols:
        return None
    ctx, at = read_context(conn), [c.name for c in table.c].index("id")

    def reseal(tpl, row) -> None:
        for i, name in cols:
            plain = crypto.unseal(tpl[i], table.name, name, tpl[at], ctx["kdf"])
            row[i] = (crypto.seal(plain, table.name, name, row[at], ctx["kdf"]) if ctx["bound"]
                      else crypto.encrypt(plain))

    return reseal


def _copy_table(conn, table, template: list[tuple], offsets: _Offsets, before: Mark, after: Mark) -> None:
    changes = _column_transforms(table, offsets)
    reseal = _resealer(conn, table)
    if reseal is None and all(sql is not None for _i, _f, sql in changes):
        exprs = {i: sql for i, _f, sql in changes}
        cols = [c.name for c in table.c]
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(cols)}) "
                             f"SELECT {', '.join(exprs.get(i, c) for i, c in enumerate(cols))} FROM {table.name} "
                             f"WHERE {_template_range(table, before, after)}")
        return
    rows = []
    for tpl in template:
        row = list(tpl)
        for i, f, _sql in changes:
            row[i] = f(row[i])
        if reseal:
            reseal(tpl, row)
        rows.append(row)
    _insert(conn, table, rows)


def _insert(conn, table, rows: list) -> None:
    cols = [c.name for c in table.c]
    cur = conn.connection.dbapi_connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            with cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cur.executemany(f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                            rows)
    finally:
        cur.close()


def copy(db: Database, before: Mark, after: Mark, copies: int, progress: Progress | None = None) -> int:
    """Add `copies` copies of the rows made between the two marks; returns the rows inserted."""
    tables = [t for t in _tables() if "id" not in t.c or after.ids[t.name] > before.ids.get(t.name, 0)]
    with db.session(write=False) as s:
        conn = s.connection()
        template = {t.name: _template_rows(conn, t, before, after) for t in tables}
    per_copy = sum(len(rows) for rows in template.values())
    inserted = 0
    for k in range(1, copies + 1):
        offsets = _Offsets(before, after, k)
        with db.session(actor="seed") as s:
            conn = s.connection()
            if conn.dialect.name == "sqlite":  # the indexes' pages stay in memory between copies
                conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            for t in tables:
                _copy_table(conn, t, template[t.name], offsets, before, after)
                inserted += len(template[t.name])
                if progress:
                    progress("copy", inserted, copies * per_copy)
        if progress:
            progress("copy", inserted, copies * per_copy)
    _advance_counters(db, before, after, copies, tables)
    return inserted


def _advance_counters(db: Database, before: Mark, after: Mark, copies: int, tables) -> None:
    """Series counters past the copies' numbers; on PostgreSQL, id sequences past their ids."""
    last = _Offsets(before, after, copies)
    with db.session(actor="seed") as s:
        for name, off in last.series.items():
            if off:
                s.execute(DocSequence.__table__.update().where(DocSequence.name == name)
                          .values(last=after.series[name] + off))
        if s.get_bind().dialect.name == "postgresql":
            for t in tables:
                if "id" in t.c:
                    s.execute(text(f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), "
                                   f"(SELECT MAX(id) FROM {t.name}))"))
