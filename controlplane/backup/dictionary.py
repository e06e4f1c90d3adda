"""A repository's zstd dictionary: chunks of an SQLite database are single pages, too small for zstd
to find much to reuse inside one; a dictionary trained on a sample of the database's pages gives it
what pages have in common (their headers, the tables' repeated values) before the first byte.

When a repository is created for an SQLite database (`erpctl backup init` with the ERP's data
directory), a dictionary is trained from pages spread over the whole file and stored in the
repository, sealed like every other object (its key is the repository's; associated data
b"dictionary"), under the store key `dictionaries/<its id>`:

    sealed(MAGIC "ERPD" | format version u16 | id (16 random bytes) | dictionary bytes)

The repository's config names it: {"dictionary": {"version": 1, "key": "dictionaries/<id>", "id":
hex of the id, "bytes": N}} (nothing derived from the data is in the plaintext config), and such
a repository is of format 2 (an erpctl that knows only format 1 refuses it instead of failing on
its chunks). Chunks sealed with it are body
type 2 (crypto.py); the sealing processes, restores and verifications open them with it. A
repository without a dictionary (format 1, or one created with no database to sample) keeps
compressing chunks on their own (body type 1), and both kinds open in every repository.
"""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path

import zstandard

from ..errors import BackupError, ChunkCorrupt
from .chunker import page_chunk_size, sqlite_page_size
from .crypto import AuthenticationFailed, Sealer
from .store import NotFound

VERSION = 1
PREFIX = "dictionaries/"  # the store key: PREFIX + the dictionary's id (written once, never replaced)
AAD = b"dictionary"
MAGIC = b"ERPD"
HEAD = struct.Struct("<4sH16s")
# 128 KiB trained from 8192 pages spread over the file (fastcover, k=1024 d=8, tuned for level 1:
# 0.5 s at init; zstd's own search of those parameters takes seconds for no smaller chunks). On the
# bench's 622 MB ERP database (15,000 random pages) the pages then compress to 23.8 % of their size
# at level 2 (11.7 us a page), 24.6 % at level 1 (9.3 us), 23.5 % at level 3 (12.8 us); 64 KiB
# from 2048 pages gave 27.2 % at level 1, level -1 without a dictionary 34.8 %; larger dictionaries
# (256, 512 KiB) no better. Level 2 is the default of repositories with one: 3 % less stored than
# level 1 for 2.4 us more a page, paid once for each new page (a backup after an update compresses
# only the pages it changed). A database of fewer than LARGE_FROM_PAGES sampled pages (8 MiB) gets
# SMALL_DICT_SIZE: its samples are too few to fill a larger one.
DICT_SIZE = 128 << 10
SMALL_DICT_SIZE = 64 << 10
SAMPLE_PAGES = 8192
LARGE_FROM_PAGES = 2048
MIN_SAMPLE_PAGES = 64  # below this (256 KiB of database) no dictionary is trained
TRAIN_LEVEL = 1
ZSTD_LEVEL = 2


def sample_pages(path: Path, min_chunk: int, pages: int = SAMPLE_PAGES) -> list[bytes]:
    """Up to `pages` chunks of the SQLite database at path (each the repository's chunk of its pages),
    spread evenly over the file, chunks of zeros left out; none when it is missing, small or not
    SQLite. Plain reads: call it in a process that holds no SQLite connection to this database."""
    try:
        page_size = page_chunk_size(sqlite_page_size(path), min_chunk)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, ValueError):
        return []
    try:
        total = os.fstat(fd).st_size // page_size
        if total < MIN_SAMPLE_PAGES:
            return []
        step = max(1, total // pages)
        zero = bytes(page_size)
        out = []
        for n in range(0, total, step):
            page = os.pread(fd, page_size, n * page_size)
            if len(page) == page_size and page != zero:
                out.append(page)
        return out[:pages]
    finally:
        os.close(fd)


def train(samples: list[bytes], size: int | None = None) -> bytes | None:
    """A dictionary for chunks like `samples` (of `size` bytes; by default DICT_SIZE, or
    SMALL_DICT_SIZE for fewer than LARGE_FROM_PAGES samples), or None when they are too few."""
    if len(samples) < MIN_SAMPLE_PAGES:
        return None
    if size is None:
        size = DICT_SIZE if len(samples) >= LARGE_FROM_PAGES else SMALL_DICT_SIZE
    try:
        return zstandard.train_dictionary(size, samples, k=1024, d=8, level=TRAIN_LEVEL).as_bytes()
    except zstandard.ZstdError:  # samples zstd cannot learn from (e.g. all alike)
        return None


def seal(sealer: Sealer, data: bytes) -> tuple[dict, bytes]:
    """(the config's entry naming the dictionary, the sealed object to store under its key)."""
    ident = secrets.token_bytes(16)
    entry = {"version": VERSION, "key": PREFIX + ident.hex(), "id": ident.hex(), "bytes": len(data)}
    return entry, sealer.seal(HEAD.pack(MAGIC, VERSION, ident) + data, AAD, compress=False)


def load(store, sealer: Sealer, entry: dict) -> bytes:
    """The dictionary the config's entry names, checked; a clear error when it is missing or damaged."""
    where = store.describe()
    fix = (f"The repository's chunks cannot be read without it: put back its object {entry.get('key')} from a "
           "copy of the repository (a second store, a file-system backup), then run 'erpctl backup verify'.")
    if int(entry.get("version", 0)) > VERSION:
        raise BackupError(f"the repository at {where} uses a compression dictionary of format {entry.get('version')}, "
                          "newer than this erpctl understands", fix="Upgrade erpctl.")
    try:
        blob = sealer.open(store.get(entry.get("key")), AAD)
    except NotFound:
        raise ChunkCorrupt(f"the compression dictionary of the backup repository at {where} is missing", fix=fix,
                           object=entry.get("key")) from None
    except AuthenticationFailed:
        raise ChunkCorrupt(f"the compression dictionary of the backup repository at {where} fails authentication "
                           "(altered or damaged)", fix=fix, object=entry.get("key")) from None
    magic, version, ident = HEAD.unpack_from(blob) if len(blob) >= HEAD.size else (b"", 0, b"")
    data = blob[HEAD.size:]
    if magic != MAGIC or version != VERSION or ident.hex() != entry.get("id") or len(data) != entry.get("bytes"):
        raise ChunkCorrupt(f"the compression dictionary of the backup repository at {where} is not the one its "
                           "config names", fix=fix, object=entry.get("key"))
    return data
