"""Packs: many sealed chunks in one stored object (as restic packs blobs), so a large database is
hundreds of objects in the store, not hundreds of thousands.

    pack = sealed chunk || sealed chunk || ... || sealed header || u32 header length || b"ERPK"
    header (sealed, associated data b"pack-header") = entries of (id 32, offset u64, length u32, raw u32)

A pack's name is the SHA-256 of its bytes; it is stored at data/<first two hex digits>/<name>.
The header makes every pack self-describing: a run killed after uploading packs but before
writing its index leaves packs the next run finds by listing data/ and reads back by their headers.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .crypto import AuthenticationFailed, Sealer

MAGIC = b"ERPK"
ENTRY = struct.Struct("<32sQII")
TRAILER = struct.Struct("<I4s")
HEADER_AAD = b"pack-header"


def chunk_aad(chunk_id: bytes) -> bytes:
    return b"chunk:" + chunk_id


def pack_key(name: str) -> str:
    return f"data/{name[:2]}/{name}"


def name_of_key(key: str) -> str:
    return key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Entry:
    id: bytes
    offset: int
    length: int
    raw_length: int


class PackCorrupt(Exception):
    pass


class PackBuilder:
    """Collects sealed chunks until the pack is big enough to store (one builder per thread)."""

    def __init__(self, sealer: Sealer):
        self.sealer = sealer
        self.reset()

    def reset(self) -> None:
        self.data = bytearray()
        self.entries: list[tuple[bytes, int, int, int]] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def add(self, chunk_id: bytes, plaintext: bytes) -> int:
        sealed = self.sealer.seal(plaintext, chunk_aad(chunk_id))
        self.add_sealed(chunk_id, sealed, len(plaintext))
        return len(sealed)

    def add_sealed(self, chunk_id: bytes, sealed: bytes, raw_length: int) -> None:
        self.entries.append((chunk_id, len(self.data), len(sealed), raw_length))
        self.data += sealed

    def __len__(self) -> int:
        return len(self.entries)

    def finish(self) -> tuple[str, bytearray, list[Entry]]:
        """(name, the pack's bytes, its entries); the builder must be reset() before reuse."""
        header = b"".join([ENTRY.pack(*e) for e in self.entries])
        sealed_header = self.sealer.seal(header, HEADER_AAD)
        data = self.data
        data += sealed_header
        data += TRAILER.pack(len(sealed_header), MAGIC)
        return hashlib.sha256(data).hexdigest(), data, [Entry(*e) for e in self.entries]


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
    return [Entry(*ENTRY.unpack_from(header, i)) for i in range(0, len(header), ENTRY.size)]


def read_header(store, sealer: Sealer, key: str) -> list[Entry]:
    trailer = store.get_range(key, -TRAILER.size, TRAILER.size)
    if len(trailer) < TRAILER.size:
        raise PackCorrupt("pack too short")
    length, magic = TRAILER.unpack(trailer)
    if magic != MAGIC:
        raise PackCorrupt("no pack trailer")
    return parse_header(sealer, store.get_range(key, -(length + TRAILER.size), length + TRAILER.size))
