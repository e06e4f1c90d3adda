"""Per-table row counts and content checksums of an ERP database.

The checksum is order-independent (the sum, modulo 2**64, of a 64-bit hash of each row's text),
so it needs no sort and, on PostgreSQL, runs entirely in the server. Two copies of one database
on the same engine give the same fingerprint; any changed, added or removed row changes it."""

from __future__ import annotations

import hashlib

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

MOD = 2**64
SKIP = {"alembic_version"}


def tables(conn: Connection) -> list[str]:
    return sorted(t for t in inspect(conn).get_table_names() if t not in SKIP)


def _sqlite_table(conn: Connection, table: str) -> dict:
    """Each row's text is repr() of its tuple of values as the driver returns them. The rows are read
    through the driver's own cursor (the same values SQLAlchemy would pass through unchanged for a
    textual query, without its per-row overhead: this loop is the cost of a large backup)."""
    rows, total = 0, 0
    raw = getattr(conn.connection, "driver_connection", None)
    if raw is not None:
        cursor = raw.cursor()
        try:
            cursor.execute(f'SELECT * FROM "{table}"')
            b2, to_int = hashlib.blake2b, int.from_bytes
            while batch := cursor.fetchmany(10_000):
                total += sum(to_int(b2(repr(row).encode(), digest_size=8).digest(), "big") for row in batch)
                rows += len(batch)
        finally:
            cursor.close()
        return {"rows": rows, "checksum": f"{total % MOD:016x}"}
    result = conn.exec_driver_sql(f'SELECT * FROM "{table}"')
    while batch := result.fetchmany(10_000):
        for row in batch:
            digest = hashlib.blake2b(repr(tuple(row)).encode(), digest_size=8).digest()
            total += int.from_bytes(digest, "big")
            rows += 1
    return {"rows": rows, "checksum": f"{total % MOD:016x}"}


def _pg_table(conn: Connection, table: str) -> dict:
    rows, total = conn.execute(text(
        f'SELECT count(*), coalesce(sum((\'x\' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0) '
        f'FROM "{table}" t')).one()
    return {"rows": int(rows), "checksum": f"{int(total) % MOD:016x}"}


def fingerprint(conn: Connection) -> dict[str, dict]:
    """{table: {"rows": n, "checksum": hex}} for every table but Alembic's bookkeeping."""
    per_table = _pg_table if conn.dialect.name == "postgresql" else _sqlite_table
    return {t: per_table(conn, t) for t in tables(conn)}


def compare(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """Human-readable differences, one per table, empty when equal."""
    out = []
    for table in sorted(set(expected) | set(actual)):
        e, a = expected.get(table), actual.get(table)
        if e is None:
            out.append(f"table {table}: present in the restore, absent from the manifest")
        elif a is None:
            out.append(f"table {table}: in the manifest ({e['rows']} rows), missing from the restore")
        elif e["rows"] != a["rows"]:
            out.append(f"table {table}: {a['rows']} rows restored, {e['rows']} in the manifest")
        elif e["checksum"] != a["checksum"]:
            out.append(f"table {table}: same row count ({a['rows']}) but content checksum "
                       f"{a['checksum']} != manifest {e['checksum']}")
    return out
