"""What an upgrade proves at each step: row counts and checksums of key ranges, and the invariants.

A snapshot hashes the chosen columns of each table in ranges of its integer key, so two snapshots
taken around a schema change (with the ERP frozen in maintenance mode) show that no row was lost
and no value changed, and name the table and key range when one did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from erp_core import ops

RANGE_KEYS = 100_000  # keys per checksummed range
MOD = 2**64


@dataclass(frozen=True)
class TableSpec:
    table: str
    key: str
    columns: tuple[str, ...]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_specs(engine: Engine, tables: list[str], *, only: dict[str, list[str]] | None = None) -> list[TableSpec]:
    """The columns of each table (all, or those of `only[table]` it has), keyed by its single integer
    primary key. Tables without one are skipped."""
    insp = inspect(engine)
    out = []
    for t in sorted(set(tables)):
        if not insp.has_table(t):
            continue
        pk = insp.get_pk_constraint(t)["constrained_columns"]
        columns = {c["name"]: c for c in insp.get_columns(t)}
        if len(pk) != 1 or not _is_integer(columns[pk[0]]["type"]):
            continue
        keep = set(only[t]) if only and t in only else None
        cols = tuple(name for name in columns if keep is None or name in keep)
        out.append(TableSpec(t, pk[0], cols))
    return out


def _is_integer(type_) -> bool:
    try:
        return type_.python_type is int
    except NotImplementedError:
        return False


def snapshot(engine: Engine, specs: list[TableSpec], range_keys: int = RANGE_KEYS) -> dict:
    """{table: {"rows": n, "columns": [...], "ranges": {"lo-hi": [rows, checksum]}}} over the given
    columns. A range's checksum is the sum (mod 2**64) of a 64-bit hash of each row: on PostgreSQL
    computed in the server, on SQLite over the driver's rows."""
    out = {}
    with engine.connect() as c:
        for spec in specs:
            per_range = _pg_ranges if engine.dialect.name == "postgresql" else _sqlite_ranges
            ranges = per_range(c, spec, range_keys)
            out[spec.table] = {"rows": sum(r[0] for r in ranges.values()), "columns": list(spec.columns),
                               "ranges": ranges}
    return out


def _pg_ranges(c, spec: TableSpec, size: int) -> dict:
    cols = ", ".join(_q(x) for x in (spec.key, *spec.columns))
    rows = c.execute(text(
        f"SELECT {_q(spec.key)} / {size} AS b, count(*), coalesce(sum(('x' || substr(md5(ROW({cols})::text), 1, 16))"
        f"::bit(64)::bigint::numeric), 0) FROM {_q(spec.table)} GROUP BY 1 ORDER BY 1")).all()
    return {_label(int(b), size): [int(n), f"{int(total) % MOD:016x}"] for b, n, total in rows}


def _sqlite_ranges(c, spec: TableSpec, size: int) -> dict:
    cols = ", ".join(_q(x) for x in (spec.key, *spec.columns))
    cursor = c.connection.driver_connection.cursor()
    sums: dict[int, list] = {}
    b2, to_int = hashlib.blake2b, int.from_bytes
    try:
        cursor.execute(f"SELECT {cols} FROM {_q(spec.table)}")
        while batch := cursor.fetchmany(20_000):
            for row in batch:
                acc = sums.setdefault(int(row[0]) // size, [0, 0])
                acc[0] += 1
                acc[1] += to_int(b2(repr(row).encode(), digest_size=8).digest(), "big")
    finally:
        cursor.close()
    return {_label(b, size): [n, f"{total % MOD:016x}"] for b, (n, total) in sorted(sums.items())}


def _label(bucket: int, size: int) -> str:
    return f"{bucket * size}-{(bucket + 1) * size - 1}"


def compare(before: dict, after: dict) -> list[dict]:
    """Differences between two snapshots (over the same columns): a missing table, a row count, a key
    range whose rows or values changed."""
    problems = []
    for table, b in before.items():
        a = after.get(table)
        if a is None:
            problems.append({"table": table, "problem": "table missing"})
            continue
        if b["rows"] != a["rows"]:
            problems.append({"table": table, "problem": f"{b['rows']} rows before, {a['rows']} after"})
        for label in sorted(set(b["ranges"]) | set(a["ranges"]), key=lambda s: int(s.split("-")[0])):
            rb, ra = b["ranges"].get(label), a["ranges"].get(label)
            if rb != ra:
                what = ("rows missing" if ra is None else "rows appeared" if rb is None else
                        f"{rb[0]} rows before, {ra[0]} after" if rb[0] != ra[0] else "values changed")
                problems.append({"table": table, "keys": label, "problem": what})
    return problems


def run_invariants(engine: Engine) -> list[dict]:
    """erp_core.invariants on this database: [] when the business data is consistent."""
    return ops.check_invariants(engine).violations


def max_keys(engine: Engine, specs: list[TableSpec]) -> dict[str, int | None]:
    with engine.connect() as c:
        return {s.table: c.execute(text(f"SELECT max({_q(s.key)}) FROM {_q(s.table)}")).scalar() for s in specs}
