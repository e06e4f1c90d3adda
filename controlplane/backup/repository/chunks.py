"""Reading chunks back: one at a time (a range of its pack), or pack by pack -- many bytes of packs
are opened by the sealing processes (each authenticates, decompresses, hashes and writes the
chunks of a pack). A chunk that is not good raises (or is reported as) ChunkCorrupt naming the
chunk, its pack and the backups that need it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ...errors import ChunkCorrupt
from .. import sealworker
from ..crypto import Sealer
from ..pack import pack_key
from ..store import NotFound
from . import tuning
from .index import ChunkIndex
from .records import Loc


def corrupt(cid: bytes, pack: str, reason: str, backups: list[str]) -> ChunkCorrupt:
    return ChunkCorrupt(f"chunk {cid.hex()} in pack {pack}: {reason} (needed by {', '.join(backups)})",
                        fix="This backup cannot be restored as stored; use another one, and run "
                            "'erpctl backup repair' to list every damaged backup and what the next "
                            "'erpctl backup create' heals.",
                        chunk=cid.hex(), pack=pack, backups=backups)


class ChunkReader:
    """Opens the chunks of one repository (store, sealer) where its index says they are."""

    def __init__(self, store, sealer: Sealer, index: ChunkIndex):
        self.store = store
        self.sealer = sealer
        self.index = index

    def read(self, cid: bytes, backups: list[str]) -> bytes:
        """One chunk's plaintext, read back, authenticated, decompressed and hashed."""
        loc = self.index.locations.get(cid)
        if loc is None:
            marked = self.index.damaged.packs_of(cid)
            if marked:
                raise ChunkCorrupt(f"chunk {cid.hex()} (needed by {', '.join(backups)}) was found damaged or "
                                   f"missing in pack {marked[0]} by a check, and no backup has stored it again",
                                   fix="Run 'erpctl backup create' (it stores the chunk again if the database "
                                       "still holds it), then 'erpctl backup repair' to see what is lost.",
                                   chunk=cid.hex(), pack=marked[0], backups=backups)
            raise ChunkCorrupt(f"chunk {cid.hex()} (needed by {', '.join(backups)}) is in no pack of the index",
                               fix="The backup is damaged; use another one.", chunk=cid.hex(), backups=backups)
        try:
            sealed = self.store.get_range(pack_key(loc.pack), loc.offset, loc.length)
        except NotFound:
            raise ChunkCorrupt(f"pack {loc.pack} holding chunk {cid.hex()} is missing",
                               fix="The backup is damaged; use another one.", chunk=cid.hex(), pack=loc.pack,
                               backups=backups) from None
        return self._open(cid, sealed, loc, backups)

    def _open(self, cid: bytes, sealed: bytes, loc: Loc, backups: list[str]) -> bytes:
        reason = sealworker.chunk_problem(self.sealer, cid, sealed, loc.length, loc.raw_length)
        if isinstance(reason, str):
            raise corrupt(cid, loc.pack, reason, backups)
        return reason

    def open_packs(self, work: dict[str, list[tuple[bytes, Loc, int]]], dest: Path | None = None
                   ) -> Iterator[tuple[str, int, list[tuple[bytes, str]]]]:
        """Open every chunk of `work` (pack -> [(chunk id, location, offset in dest or -1)]): each read
        back, authenticated, decompressed and hashed, and written at its offset of dest (an existing
        file) when given. Yields (pack, bytes of it read, [(chunk id, why it is not good)]) pack by
        pack; a missing pack yields 0 bytes and "its pack is missing" for each of its chunks. Many
        bytes are opened by the sealing processes, a pack at a time each (their answers stay small)."""
        total = sum(loc.length for chunks in work.values() for _, loc, _ in chunks)
        pool = (sealworker.Pool(tuning.SEAL_PROCESSES, self.sealer.master, self.sealer.zstd_level, [],
                                self.sealer.dictionary)
                if total >= tuning.OPEN_PROCESS_MIN_BYTES else None)
        fd = os.open(dest, os.O_WRONLY) if dest is not None and pool is None else None
        busy: dict[int, str] = {}  # worker -> the pack it opens

        def answer(k: int) -> tuple[str, int, list[tuple[bytes, str]]]:
            name = busy.pop(k)
            _written, problems, _cpu = pool.workers[k].open_result()
            return name, sizes[name], problems

        sizes: dict[str, int] = {}
        try:
            for i, name in enumerate(sorted(work)):
                try:
                    data = self.store.get(pack_key(name))
                except NotFound:
                    yield name, 0, [(cid, "its pack is missing") for cid, _, _ in work[name]]
                    continue
                entries = [(cid, loc.offset, loc.length, loc.raw_length, at) for cid, loc, at in work[name]]
                if pool is None:
                    yield name, len(data), sealworker.open_pack(self.sealer, data, entries, fd)[1]
                    continue
                k = i % len(pool.workers)
                if k in busy:
                    yield answer(k)
                sizes[name] = len(data)
                pool.workers[k].submit_open(str(dest or ""), entries, data)
                busy[k] = name
            for k in sorted(busy, key=lambda k: busy[k]):
                yield answer(k)
        except BaseException:
            if pool is not None:
                pool.close(kill=True)
                pool = None
            raise
        finally:
            if fd is not None:
                os.close(fd)
            if pool is not None:
                pool.close()
