"""Packs: many sealed chunks in one stored object (as restic packs blobs), so a large database is
hundreds of objects in the store, not hundreds of thousands.

    pack = sealed chunk || sealed chunk || ... || sealed header || u32 header length || b"ERPK"
    header (sealed, associated data b"pack-header") = entries of (id 32, offset u64, length u32, raw u32)

A pack's name is the SHA-256 of its bytes; it is stored at data/<first two hex digits>/<name>.
The header makes every pack self-describing: a run killed after uploading packs but before
writing its index leaves packs the next run finds by listing data/ and reads back by their headers.
Packs are built by packbuilder.py (numpy, which what only reads a repository does not load).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .crypto import AuthenticationFailed, Sealer, chunk_aad  # noqa: F401 - chunk_aad: part of this API

MAGIC = b"ERPK"
ENTRY = struct.Struct("<32sQII")
TRAILER = struct.Struct("<I4s")
HEADER_AAD = b"pack-header"


def pack_key(name: str) -> str:
    return f"data/{name[:2]}/{name}"


def name_of_key(key: str) -> str:
    return key.rsplit("/", 1)[-1]


class Entry(NamedTuple):  # a tuple: hundreds of thousands are made when an index is read
    id: bytes
    offset: int
    length: int
    raw_length: int


class PackCorrupt(Exception):
    pass


def decode_entries(data: bytes) -> list[Entry]:
    if len(data) % ENTRY.size:
        raise PackCorrupt("a list of pack entries with a partial entry")
    return list(map(Entry._make, ENTRY.iter_unpack(data)))


def parse_header(sealer: Sealer, tail: bytes) -> list[Entry]:
    """The entries from the end of a pack (`tail` must hold the whole sealed header and trailer)."""
    if len(tail) < TRAILER.size:
        raise PackCorrupt("pack too short")
    length, magic = TRAILER.unpack(tail[-TRAILER.size:])
    if magic != MAGIC or length + TRAILER.size > len(tail):
        raise PackCorrupt("no pack trailer")
    sealed = tail[-TRAILER.size - length:-TRAILER.size]
    try:
        header = sealer.open(sealed, HEADER_AAD)
    except AuthenticationFailed:
        raise PackCorrupt("pack header fails authentication") from None
    if len(header) % ENTRY.size:
        raise PackCorrupt("pack header has a partial entry")
    return list(map(Entry._make, ENTRY.iter_unpack(header)))


def read_header(store, sealer: Sealer, key: str) -> list[Entry]:
    trailer = store.get_range(key, -TRAILER.size, TRAILER.size)
    if len(trailer) < TRAILER.size:
        raise PackCorrupt("pack too short")
    length, magic = TRAILER.unpack(trailer)
    if magic != MAGIC:
        raise PackCorrupt("no pack trailer")
    return parse_header(sealer, store.get_range(key, -(length + TRAILER.size), length + TRAILER.size))
