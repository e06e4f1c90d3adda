"""Cutting a captured snapshot into chunks.

SQLite files are cut at page boundaries (the page size is read from the file's header): a chunk is
one page, or a small fixed run of pages when pages are tiny, so a backup after scattered row
updates stores about the pages that changed and nothing else.

Other files (pg_dump's custom format) are cut by content (controlplane.backup.cdc, with the
sizes below); this module loads no numpy, so what only reads a repository (backup list) does not.
"""

from __future__ import annotations

from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
MIN_SQLITE_CHUNK = 4096

CDC_MIN = 16 << 10
CDC_AVG_BITS = 16  # a boundary every ~64 KiB past the minimum
CDC_MAX = 256 << 10


class NotSqlite(ValueError):
    pass


def sqlite_page_size(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise NotSqlite(f"{path} is not an SQLite database")
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def page_chunk_size(page: int, min_chunk: int = MIN_SQLITE_CHUNK) -> int:
    """The chunk size for an SQLite file with pages of `page` bytes: one page, or the fewest whole
    pages that reach min_chunk."""
    return page * max(1, -(-min_chunk // page))
