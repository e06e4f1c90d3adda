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
from typing import NamedTuple

import numpy as np

from .crypto import AuthenticationFailed, Sealer, chunk_aad  # noqa: F401 - chunk_aad: part of this API

MAGIC = b"ERPK"
ENTRY = struct.Struct("<32sQII")
# the same layout as ENTRY, for a whole header at once
ENTRY_DTYPE = np.dtype([("id", "S32"), ("offset", "<u8"), ("length", "<u4"), ("raw_length", "<u4")])
assert ENTRY_DTYPE.itemsize == ENTRY.size
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


class PackBuilder:
    """Collects sealed chunks until the pack is big enough to store (one builder per thread)."""

    def __init__(self, sealer: Sealer):
        self.sealer = sealer
        self.reset()

    def reset(self) -> None:
        self.parts: list = []  # sealed chunks (bytes, or views of a larger buffer): joined once, at finish
        self.size = 0
        self.ids: list[bytes] = []
        self.lengths: list[int] = []
        self.raw_lengths: list[int] = []

    def add(self, chunk_id: bytes, plaintext: bytes) -> int:
        sealed = self.sealer.seal(plaintext, chunk_aad(chunk_id))
        self.add_sealed(chunk_id, sealed, len(plaintext))
        return len(sealed)

    def add_sealed(self, chunk_id: bytes, sealed, raw_length: int) -> None:
        self.ids.append(chunk_id)
        self.lengths.append(len(sealed))
        self.raw_lengths.append(raw_length)
        self.parts.append(sealed)
        self.size += len(sealed)

    def add_run(self, ids: list[bytes], sealed, lengths, raw_lengths: list[int]) -> None:
        """Chunks sealed one after the other into one buffer (`lengths` their sizes), all added."""
        self.ids += ids
        self.lengths += lengths
        self.raw_lengths += raw_lengths
        self.parts.append(sealed)
        self.size += len(sealed)

    def __len__(self) -> int:
        return len(self.ids)

    def finish(self) -> tuple[str, bytes, bytes]:
        """(name, the pack's bytes, its header's plaintext: the entries, ENTRY after ENTRY); the
        builder must be reset() before reuse."""
        header = encode_entries(self.ids, self.lengths, self.raw_lengths)
        sealed_header = self.sealer.seal(header, HEADER_AAD)
        data = b"".join([*self.parts, sealed_header, TRAILER.pack(len(sealed_header), MAGIC)])
        return hashlib.sha256(data).hexdigest(), data, header


def encode_entries(ids: list[bytes], lengths: list[int], raw_lengths: list[int]) -> bytes:
    """ENTRY after ENTRY for chunks stored one after the other from offset 0 (numpy: one pass in C)."""
    entries = np.empty(len(ids), dtype=ENTRY_DTYPE)
    if len(ids):
        entries["id"] = ids
        lengths_arr = np.asarray(lengths, dtype="<u8")
        entries["offset"][0] = 0
        np.cumsum(lengths_arr[:-1], out=entries["offset"][1:])
        entries["length"] = lengths_arr
        entries["raw_length"] = raw_lengths
    return entries.tobytes()


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
