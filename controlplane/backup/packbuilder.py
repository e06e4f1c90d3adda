"""Building packs (pack.py has their format): sealed chunks collected until the pack is big enough,
then its header of entries, encoded by numpy in one pass."""

from __future__ import annotations

import hashlib

import numpy as np

from .crypto import Sealer, chunk_aad
from .pack import ENTRY, HEADER_AAD, MAGIC, TRAILER

# the same layout as pack.ENTRY, for a whole header at once
ENTRY_DTYPE = np.dtype([("id", "S32"), ("offset", "<u8"), ("length", "<u4"), ("raw_length", "<u4")])
assert ENTRY_DTYPE.itemsize == ENTRY.size


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
