"""Writing packs: new chunks, deduplicated, sealed into packs that are uploaded in the background."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ...faults import failpoint
from ..crypto import Sealer
from ..pack import ENTRY, chunk_aad, pack_key
from ..packbuilder import PackBuilder
from . import tuning

if TYPE_CHECKING:
    from .core import Repository

log = logging.getLogger("controlplane.backup")


class PackWriter:
    """Fills packs with new chunks (deduplicated against the index and against each other) and
    uploads them in the background, at most UPLOAD_WORKERS at a time. Safe to feed from several
    threads: each fills a pack of its own (with its own Sealer: a zstd context is single-threaded)."""

    def __init__(self, repo: Repository):
        self.repo = repo
        self.pool = ThreadPoolExecutor(tuning.UPLOAD_WORKERS, thread_name_prefix="pack-upload")
        self.slots = threading.BoundedSemaphore(tuning.UPLOAD_WORKERS)  # packs being uploaded
        self.pending: list[Future] = []
        self.mutex = threading.Lock()
        self.local = threading.local()
        self.builders: list[PackBuilder] = []
        self.new_packs: dict[str, bytes] = {}  # pack name -> its entries, encoded (packbuilder.encode_entries)
        self.placed: dict[bytes, None] = {}
        self.bytes_written = 0
        self.chunks_new = 0
        self.plain_new = 0
        self.failed: BaseException | None = None
        self.seal_cpu = 0.0  # CPU seconds of the sealing threads (a += of floats is atomic enough)

    def sealer(self) -> Sealer:
        """This thread's own Sealer."""
        sealer = getattr(self.local, "sealer", None)
        if sealer is None:
            sealer = self.local.sealer = self.repo.sealer.copy()
        return sealer

    def _builder(self) -> PackBuilder:
        b = getattr(self.local, "builder", None)
        if b is None:
            b = self.local.builder = PackBuilder(self.sealer())
            with self.mutex:
                self.builders.append(b)
        return b

    def add(self, cid: bytes, plaintext: bytes) -> None:
        if not self.claim(cid):
            return
        self.count(1, len(plaintext))
        sealed = self.sealer().seal(plaintext, chunk_aad(cid))
        self.put(cid, sealed, len(plaintext))

    def claim(self, cid: bytes) -> bool:
        """True once per chunk id that is not in the index: the caller stores that chunk."""
        if cid in self.repo.index:
            return False
        with self.mutex:
            if cid in self.placed:
                return False
            self.placed[cid] = None
            return True

    def claim_many(self, ids: list[bytes]) -> list[int]:
        """The positions in `ids` of the chunks to store: the first of each id that is neither in the
        index nor claimed before (by any thread). Counts them as new chunks."""
        index, placed, out = self.repo.index, self.placed, []
        with self.mutex:
            for i, cid in enumerate(ids):
                if cid not in index and cid not in placed:
                    placed[cid] = None
                    out.append(i)
            self.chunks_new += len(out)
        return out

    def count(self, chunks: int, raw_bytes: int) -> None:
        """Account for new chunks (and their plaintext bytes) stored with put()."""
        with self.mutex:
            self.chunks_new += chunks
            self.plain_new += raw_bytes

    def add_sealed(self, cid: bytes, sealed: bytes, raw_length: int, new: bool = False) -> None:
        if new:
            if not self.claim(cid):
                return
            self.count(1, raw_length)
        else:
            with self.mutex:
                if cid in self.placed:
                    return
                self.placed[cid] = None
        self.put(cid, sealed, raw_length)

    def put_run(self, ids: list[bytes], sealed: bytes, lengths, raw_lengths: list[int]) -> None:
        """put() of chunks sealed one after the other into `sealed` (claimed already)."""
        b = self._builder()
        b.add_run(ids, sealed, lengths, raw_lengths)
        if b.size >= self.repo.pack_size:
            self._ship(b)

    def put(self, cid: bytes, sealed: bytes, raw_length: int) -> None:
        b = self._builder()
        b.add_sealed(cid, sealed, raw_length)
        if b.size >= self.repo.pack_size:
            self._ship(b)

    def _ship(self, builder: PackBuilder) -> None:
        if self.failed is not None:
            raise self.failed
        if not len(builder):
            return
        name, data, header = builder.finish()
        builder.reset()
        self.slots.acquire()
        try:
            future = self.pool.submit(self._upload, name, data, header)
        except BaseException:
            self.slots.release()
            raise
        with self.mutex:
            self.pending.append(future)

    def _upload(self, name: str, data: bytes, header: bytes) -> None:
        try:
            self.repo.store.put(pack_key(name), data)
        except BaseException as exc:
            self.failed = self.failed or exc
            raise
        finally:
            self.slots.release()
        log.debug("uploaded pack", extra={"pack": name, "bytes": len(data), "chunks": len(header) // ENTRY.size})
        with self.mutex:
            self.new_packs[name] = header
            self.bytes_written += len(data)
        failpoint("backup.pack.uploaded")

    def flush(self) -> None:
        """Ship every partly filled pack and wait for the uploads (re-raising the first error). The
        new packs are in new_packs, not yet in the repository's index (see Repository.forget_index)."""
        for b in list(self.builders):
            self._ship(b)
        with self.mutex:
            pending, self.pending = self.pending, []
        for f in pending:
            f.result()
        if self.failed is not None:
            raise self.failed

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

