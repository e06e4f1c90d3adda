"""Per-table row counts and content checksums of an ERP database ("fingerprints"), taken at backup
time and recomputed on the restored copy by the L3 verification.

Each manifest names the method its fingerprint was taken with (Manifest.fingerprint_method), and L3
recomputes it the same way, so backups taken with an older method keep verifying:

    sqlite-pages-v1   SQLite. rows: SELECT count(*). checksum: BLAKE2b-128 over the digests of the
                      pages the table owns (its b-tree, its overflow pages and the b-trees of its
                      indexes, as the dbstat virtual table lists them), in page-number order; a
                      page's digest is BLAKE2b-256 keyed with the repository's id key, which is the
                      page's chunk id when a chunk is one page, so a backup gets the checksums from
                      the chunk ids it computes anyway. It all runs at C speed (SQLite walks the
                      b-trees, hashlib reads the pages). A restored copy is page for page the
                      captured file (SQLite's backup API copies pages verbatim and the repository
                      restores the bytes), so it has the same checksums; a changed row, index entry
                      or overflow page changes its table's checksum.
    rows              PostgreSQL, and SQLite backups made before sqlite-pages-v1. The checksum is
                      order-independent: the sum, modulo 2**64, of a 64-bit hash of each row's text,
                      so it needs no sort and, on PostgreSQL, runs entirely in the server. Any
                      changed, added or removed row changes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import sqlite3
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a Connection is passed in; this module needs no SQLAlchemy of its own (backup list
    from sqlalchemy.engine import Connection  # reads manifests through it and opens no database)

MOD = 2**64
SKIP = {"alembic_version"}

ROWS = "rows"
SQLITE_PAGES = "sqlite-pages-v1"
METHODS = (ROWS, SQLITE_PAGES)


class UnknownMethod(ValueError):
    pass


def default_method(dialect: str) -> str:
    """The method new backups of this engine ('sqlite' or 'postgresql') are fingerprinted with."""
    return SQLITE_PAGES if dialect == "sqlite" else ROWS


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise UnknownMethod(f"unknown fingerprint method {method!r} (this erpctl knows {', '.join(METHODS)}); "
                            "a newer erpctl made this backup")


def tables(conn: Connection) -> list[str]:
    return sorted(t for t in conn.dialect.get_table_names(conn) if t not in SKIP)


# ---- rows: a hash of every row's text ------------------------------------------------------------

def _sqlite_table(conn: Connection, table: str) -> dict:
    """Each row's text is repr() of its tuple of values as the driver returns them. The rows are read
    through the driver's own cursor (the same values SQLAlchemy would pass through unchanged for a
    textual query, without its per-row overhead)."""
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
    rows, total = conn.exec_driver_sql(
        f'SELECT count(*), coalesce(sum((\'x\' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0) '
        f'FROM "{table}" t').one()
    return {"rows": int(rows), "checksum": f"{int(total) % MOD:016x}"}


# ---- sqlite-pages-v1: the pages each table owns ---------------------------------------------------

def _user_tables(db: sqlite3.Connection) -> list[str]:
    """The tables SQLAlchemy lists (sqlite_* ones excluded), less Alembic's bookkeeping."""
    names = db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite~_%' "
                       "ESCAPE '~'").fetchall()
    return sorted(n for (n,) in names if n not in SKIP)


def sqlite_layout(db: sqlite3.Connection) -> tuple[int, dict[str, dict]]:
    """(page size, {table: {"rows": n, "pages": [[first, last], ...]}}): each table's row count and
    the runs of page numbers it owns (its b-tree, overflow pages and indexes), ascending. `db` must
    not change meanwhile (a snapshot opened immutable, or inside one read transaction)."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    wanted = _user_tables(db)
    owner = {name: table for name, table in
             db.execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')")}
    pages: dict[str, list[int]] = defaultdict(list)
    for name, pageno in db.execute("SELECT name, pageno FROM dbstat('main')"):
        pages[owner.get(name, "")].append(pageno)
    out = {}
    for table in wanted:
        runs: list[list[int]] = []
        for p in sorted(pages.get(table, ())):
            if runs and runs[-1][1] == p - 1:
                runs[-1][1] = p
            else:
                runs.append([p, p])
        (rows,) = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        out[table] = {"rows": int(rows), "pages": runs}
    return int(page_size), out


def page_digest(page, key: bytes) -> bytes:
    """A page's digest: BLAKE2b-256 keyed with the repository's id key (so, when a chunk is one page,
    exactly that chunk's id)."""
    return hashlib.blake2b(page, key=key, digest_size=32).digest()


def checksums(layout: dict[str, dict], run_digests) -> dict[str, dict]:
    """{table: {"rows", "checksum"}} from a layout (sqlite_layout) and run_digests(first, last) -> the
    digests of pages first..last, concatenated: the checksum is BLAKE2b-128 of the table's page
    digests in page-number order."""
    out = {}
    for table, info in sorted(layout.items()):
        h = hashlib.blake2b(digest_size=16)
        for first, last in info["pages"]:
            h.update(run_digests(first, last))
        out[table] = {"rows": info["rows"], "checksum": h.hexdigest()}
    return out


def sqlite_pages(db: sqlite3.Connection, image, key: bytes) -> dict[str, dict]:
    """The sqlite-pages-v1 fingerprint of the database `db` whose bytes are `image` (the whole file:
    page n is image[(n - 1) * page_size : n * page_size])."""
    page_size, layout = sqlite_layout(db)
    view = memoryview(image)
    try:
        if len(view) % page_size:
            raise ValueError(f"the database image is {len(view)} bytes, not a whole number of "
                             f"{page_size}-byte pages")
        npages = len(view) // page_size

        def run_digests(first: int, last: int) -> bytes:
            if not 1 <= first <= last <= npages:
                raise ValueError(f"pages {first}-{last} lie past the end of the database image ({npages} pages)")
            return b"".join([page_digest(view[(p - 1) * page_size:p * page_size], key)
                             for p in range(first, last + 1)])

        return checksums(layout, run_digests)
    finally:
        view.release()


def _sqlite_pages_of_connection(raw: sqlite3.Connection, key: bytes) -> dict[str, dict]:
    """Through a private copy (SQLite's backup API, in a temporary file) of the database `raw` sees,
    WAL included: a database in WAL mode may hold its newest pages outside its file."""
    with tempfile.TemporaryDirectory(prefix="erpctl-fingerprint-") as d:
        copy = Path(d) / "copy.sqlite3"
        dst = sqlite3.connect(copy)
        try:
            dst.execute("PRAGMA synchronous=OFF")
            raw.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
        return sqlite_file_fingerprint(copy, key)


def _is_wal(path: Path) -> bool:
    # asked through SQLite, not read with a file descriptor of our own: closing one would drop the
    # POSIX locks that this process's SQLite connections hold on the file
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        db.close()


def _need_key(key: bytes | None) -> bytes:
    if not key:
        raise ValueError(f"the {SQLITE_PAGES} fingerprint is keyed: pass the repository's id key")
    return key


def sqlite_file_fingerprint(path: str | os.PathLike, key: bytes | None = None,
                            method: str = SQLITE_PAGES) -> dict[str, dict]:
    """The fingerprint of the SQLite database file at `path`, a file private to the caller (a snapshot,
    a restored copy: it is read in place, and no connection of this process may have it open, since
    closing the file drops their POSIX locks). One in WAL mode is first copied through SQLite, so pages
    still in its -wal count. For a database in use, see fingerprint(conn)."""
    _check_method(method)
    path = Path(path)
    if method == ROWS:  # backups made before sqlite-pages-v1 only: SQLAlchemy loaded for them alone
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return fingerprint(conn, ROWS)
        finally:
            engine.dispose()
    key = _need_key(key)
    if _is_wal(path):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return _sqlite_pages_of_connection(db, key)
        finally:
            db.close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")  # a read transaction (shared lock): no writer changes the file meanwhile
        db.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return sqlite_pages(db, b"", key)
            with contextlib.closing(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)) as image:
                return sqlite_pages(db, image, key)
    finally:
        db.close()


# ---- either ------------------------------------------------------------------------------------

def fingerprint(conn: Connection, method: str | None = None, key: bytes | None = None) -> dict[str, dict]:
    """{table: {"rows": n, "checksum": hex}} for every table but Alembic's bookkeeping, by `method`
    (default: the engine's current one, see default_method). sqlite-pages-v1 is keyed with the
    repository's id key (`key`)."""
    dialect = conn.dialect.name
    method = method or default_method(dialect)
    _check_method(method)
    if method == SQLITE_PAGES:
        if dialect != "sqlite":
            raise UnknownMethod(f"the fingerprint method {method} is for SQLite databases, not {dialect}")
        return _sqlite_pages_of_connection(conn.connection.driver_connection, _need_key(key))
    per_table = _pg_table if dialect == "postgresql" else _sqlite_table
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
