"""The index: which pack holds each chunk. Sealed index/<sha256> files, each listing a set of packs
and their entries (the same entries a pack's own header holds); packs that no index names yet (a
run killed before writing its index) are adopted by reading their headers."""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterable

import zstandard

from ..crypto import AuthenticationFailed, Sealer
from ..pack import ENTRY, Entry, PackCorrupt, decode_entries, name_of_key, pack_key, read_header
from ..store import NotFound
from .damage import DamageMarks
from .records import Loc

log = logging.getLogger("controlplane.backup")


def encode_index(packs: dict[str, list[Entry] | bytes]) -> bytes:
    """Entries are a list, or already encoded (ENTRY after ENTRY, as a pack's header holds them)."""
    out = [struct.pack("<I", len(packs))]
    for name, entries in sorted(packs.items()):
        if isinstance(entries, (bytes, bytearray)):
            out.append(bytes.fromhex(name) + struct.pack("<I", len(entries) // ENTRY.size))
            out.append(entries)
        else:
            out.append(bytes.fromhex(name) + struct.pack("<I", len(entries)))
            out.extend(ENTRY.pack(e.id, e.offset, e.length, e.raw_length) for e in entries)
    return b"".join(out)


def decode_index(data: bytes) -> dict[str, list[Entry]]:
    (n,), pos, packs = struct.unpack_from("<I", data), 4, {}
    for _ in range(n):
        name = data[pos:pos + 32].hex()
        (count,) = struct.unpack_from("<I", data, pos + 32)
        pos += 36
        packs[name] = decode_entries(data[pos:pos + count * ENTRY.size])
        pos += count * ENTRY.size
    return packs


class ChunkIndex:
    """The index as loaded from a store: chunk id -> Loc (the first pack named for it wins), the
    index files it was read from and the packs it covers. A location marked damaged (damage.py)
    is left out: the chunk is then absent, or found in the pack a later backup stored it in."""

    def __init__(self, store, sealer: Sealer):
        self.store = store
        self.sealer = sealer
        self.locations: dict[bytes, Loc] = {}
        self.files: list[str] = []
        self.packs: set[str] = set()
        self.damaged = DamageMarks(store, sealer)

    def forget(self) -> None:
        self.locations, self.files, self.packs = {}, [], set()

    def load(self) -> None:
        self.forget()
        self.damaged.load()
        for obj in self.store.list("index/"):
            try:
                packs = decode_index(self.sealer.open(self.store.get(obj.key), b"index"))
            except NotFound:
                continue
            except (AuthenticationFailed, PackCorrupt, struct.error, zstandard.ZstdError) as exc:
                log.warning("skipping an unreadable index file (the packs' own headers stand in for it)",
                            extra={"index": obj.key, "error": str(exc)})
                continue
            self.files.append(obj.key)
            for name, entries in packs.items():
                self.add(name, entries)

    def add(self, name: str, entries: Iterable[Entry]) -> None:
        self.packs.add(name)
        setdefault = self.locations.setdefault
        marks = self.damaged.marks
        for cid, offset, length, raw_length in entries:
            if marks and (cid, name) in marks:
                continue
            setdefault(cid, Loc(name, offset, length, raw_length))

    def write(self, packs: dict[str, list[Entry] | bytes]) -> tuple[str, int]:
        """A new index file for packs: (its name, its size in bytes)."""
        sealed = self.sealer.seal(encode_index(packs), b"index")
        name = hashlib.sha256(sealed).hexdigest()
        self.store.put(f"index/{name}", sealed)
        return name, len(sealed)

    def pack_listing(self) -> dict[str, int]:
        """Every pack in the store, with its size."""
        return {name_of_key(o.key): o.size for o in self.store.list("data/")}

    def adopt_unindexed(self, listing: dict[str, int]) -> dict[str, list[Entry]]:
        """Packs in the store that no index names (a run killed before writing its index): read their
        headers and index their chunks, so the next run reuses what was uploaded."""
        adopted = {}
        for name in sorted(set(listing) - self.packs):
            try:
                entries = read_header(self.store, self.sealer, pack_key(name))
            except (PackCorrupt, NotFound) as exc:
                log.warning("ignoring an unreadable pack", extra={"pack": name, "error": str(exc)})
                continue
            adopted[name] = entries
            self.add(name, entries)
        if adopted:
            log.info("reusing packs of an unfinished run", extra={"packs": len(adopted)})
        return adopted
