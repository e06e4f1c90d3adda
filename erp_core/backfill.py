"""Backfills: the data step of a staged upgrade, in resumable key-range batches.

A backfill migration (stage "backfill") lists its work as `BACKFILLS`, a list of Backfill: which
table, which integer key, which columns it fills, which rows still need it (`pending`) and how to
fill them (`set_clause`, the body of an UPDATE ... SET). Anyone may drive them batch by batch:

    for bf in backfills():
        after = checkpoint(conn, bf) or (key_bounds(conn, bf) or (0, 0))[0] - 1
        while True:
            with conn.begin():                       # one batch, one transaction
                result = run_batch(conn, bf, after, 10_000)
            if result.last_key is None:
                break
            after = result.last_key

run_batch fills the rows of one key range and records the range's end in erp_backfill_progress in
the same transaction, so a batch that is rolled back (or killed) leaves the checkpoint where it was
and is simply run again. Rows inserted meanwhile are filled by the expand step's compatibility
triggers, so the checkpoint only moves forward. erp_backfill_progress exists between the expand and
the contract migrations; these functions need it (only key_bounds and remaining do not).

Each batch is two indexed statements and one UPDATE over a primary-key range: no row passes through
Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, String, column, table, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .db import known_migrations, migration_module
from .models.base import UTCDateTime, utcnow

PROGRESS_TABLE = "erp_backfill_progress"
_progress = table(PROGRESS_TABLE, column("name", String), column("last_key", BigInteger),
                  column("rows_done", BigInteger), column("updated_at", UTCDateTime))


@dataclass(frozen=True)
class Backfill:
    name: str                  # stable id, e.g. "sales_order_lines.currency_amounts"
    table: str
    key: str                   # integer primary key column; batches are key ranges
    columns: tuple[str, ...]   # the columns it fills (checksum these per key range to compare)
    pending: str               # SQL boolean over the table: this row still needs filling
    set_clause: str            # SQL SET body (may use correlated subqueries)
    prepare: str | None = None  # SQL run first in each batch, with :lo and :hi the key range
    #                            (lo exclusive, hi inclusive); idempotent (e.g. create the opening lots)


@dataclass(frozen=True)
class BatchResult:
    last_key: int | None  # the end of the range filled (now the checkpoint); None: nothing was left
    rows: int             # rows filled in the range


def backfills(revision: str | None = None) -> list[Backfill]:
    """The backfills of this code's backfill migrations (or of one of them), in the order to run them."""
    out: list[Backfill] = []
    for m in known_migrations():
        if m["stage"] == "backfill" and revision in (None, m["revision"]):
            out += list(getattr(migration_module(m["revision"]), "BACKFILLS", []))
    return out


def key_bounds(conn: Connection, bf: Backfill) -> tuple[int, int] | None:
    """The smallest and largest key of the table; None if it is empty."""
    # two subqueries: each is one index probe (one MIN/MAX statement scans the whole table on SQLite)
    lo, hi = conn.execute(text(f"SELECT (SELECT MIN({bf.key}) FROM {bf.table}), "
                               f"(SELECT MAX({bf.key}) FROM {bf.table})")).one()
    return None if lo is None else (int(lo), int(hi))


def run_batch(conn: Connection, bf: Backfill, after_key: int, limit: int) -> BatchResult:
    """Fill the pending rows with key in (after_key, K], K being the key of the `limit`-th row after
    after_key (or the last key), and record K as the checkpoint, in the caller's transaction."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    params = {"after": int(after_key), "skip": limit - 1}
    end = conn.execute(text(f"SELECT {bf.key} FROM {bf.table} WHERE {bf.key} > :after "
                            f"ORDER BY {bf.key} LIMIT 1 OFFSET :skip"), params).scalar()
    if end is None:
        end = conn.execute(text(f"SELECT MAX({bf.key}) FROM {bf.table} WHERE {bf.key} > :after"), params).scalar()
        if end is None:
            return BatchResult(None, 0)
    bounds = {"lo": int(after_key), "hi": int(end)}
    if bf.prepare:
        conn.execute(text(bf.prepare), bounds)
    rows = conn.execute(text(f"UPDATE {bf.table} SET {bf.set_clause} "
                             f"WHERE {bf.key} > :lo AND {bf.key} <= :hi AND ({bf.pending})"), bounds).rowcount
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(_progress).values(name=bf.name, last_key=int(end), rows_done=rows, updated_at=utcnow())
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={
        "last_key": stmt.excluded.last_key, "rows_done": _progress.c.rows_done + stmt.excluded.rows_done,
        "updated_at": stmt.excluded.updated_at}))
    return BatchResult(int(end), rows)


def checkpoint(conn: Connection, bf: Backfill) -> int | None:
    """The last key recorded for this backfill; None if it has not started."""
    value = conn.execute(text(f"SELECT last_key FROM {PROGRESS_TABLE} WHERE name = :name"),
                         {"name": bf.name}).scalar()
    return None if value is None else int(value)


def rows_done(conn: Connection, bf: Backfill) -> int:
    """Rows filled so far by this backfill's batches."""
    return int(conn.execute(text(f"SELECT rows_done FROM {PROGRESS_TABLE} WHERE name = :name"),
                            {"name": bf.name}).scalar() or 0)


def remaining(conn: Connection, bf: Backfill) -> int:
    """Rows that still need filling (a full count: for verification, not for every batch)."""
    return int(conn.execute(text(f"SELECT COUNT(*) FROM {bf.table} WHERE {bf.pending}")).scalar())


def run_all(conn: Connection, bf: Backfill, limit: int = 10_000) -> int:
    """Run batches from the checkpoint to the end of the table, in the caller's transaction; then, if
    rows below the checkpoint are still pending, once more from the start. Returns the rows filled."""
    bounds = key_bounds(conn, bf)
    if bounds is None:
        return 0
    start = bounds[0] - 1
    done = 0
    for after in (checkpoint(conn, bf), start):
        after = start if after is None else after
        while True:
            result = run_batch(conn, bf, after, limit)
            if result.last_key is None:
                break
            done += result.rows
            after = result.last_key
        if not remaining(conn, bf):
            break
    return done
