"""Creating a backup: capture a snapshot, cut it into chunks, seal and store the new ones in packs,
write an index of the new packs, then the manifest (last, so a backup exists only when complete).

Small snapshots are sealed by threads; a large SQLite database by the sealing processes
(sealworker.py), started before the capture so that their start-up overlaps it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from erp_core.ops import __version__ as ERP_VERSION

from ...config import Target
from ...errors import BackupError
from ...evidence import EvidenceLog
from .. import fingerprint, sealworker
from ..cdc import cdc_chunks
from ..chunker import CDC_AVG_BITS, CDC_MAX, CDC_MIN, MIN_SQLITE_CHUNK
from ..lock import Lock
from ..pack import Entry, chunk_aad
from ..snapshot import capture, sqlite_bytes
from . import tuning
from .packwriter import PackWriter
from .records import Manifest, Progress, noop, now_iso, record_outcome

if TYPE_CHECKING:
    from .core import Repository

log = logging.getLogger("controlplane.backup")


def create_backup(repo: Repository, target: Target, *, progress: Progress | None = None,
                  check_invariants: bool = False) -> Manifest:
    """Repository.create_backup: the backup, with its outcome recorded ('backup.create')."""
    t0 = time.perf_counter()
    progress = progress or noop
    try:
        manifest = _create(repo, target, progress, t0, check_invariants)
    except Exception as exc:
        record_outcome(target.data_dir, "backup.create", False, {
            "repository": repo.url, "error": getattr(exc, "detail", str(exc)), "error_type": type(exc).__name__,
            "duration_seconds": round(time.perf_counter() - t0, 3)})
        raise
    record_outcome(target.data_dir, "backup.create", True, {
        "repository": repo.url, "backup_id": manifest.id, "engine": manifest.engine,
        "size_bytes": manifest.size_bytes, "bytes_added": manifest.bytes_added,
        "chunk_count": manifest.chunk_count, "duration_seconds": manifest.duration_seconds,
        "schema_revision": manifest.schema_revision, "invariants_ok": manifest.invariants_ok,
        "invariant_violations": None if manifest.invariants is None else len(manifest.invariants),
        "tables": {t: v["rows"] for t, v in manifest.tables.items()}})
    return manifest


def _create(repo: Repository, target: Target, progress: Progress, t0: float, check_invariants: bool) -> Manifest:
    created_at = now_iso()
    with Lock(repo.store, "backup", exclusive=False).acquire(repo.lock_wait) as lock:
        repo.clean_store_temporaries()
        repo.load_index()
        adopted = repo.chunk_index.adopt_unindexed(repo.chunk_index.pack_listing())
        progress("capture", 0, None)
        with contextlib.ExitStack() as stack:
            min_chunk = int(repo.config.get("sqlite_min_chunk", MIN_SQLITE_CHUNK))
            pool = _sealing_processes(repo, target, stack)
            snap = stack.enter_context(capture(
                target, check_invariants, in_place_min_page=min_chunk if pool is not None else None,
                before_copy=pool and (lambda: pool.preseal(target.sqlite_path, min_chunk))))
            progress("capture", 1, 1)
            stored = _store(repo, snap, pool, progress)
            snap.wait_facts()
            if snap.layout is not None:
                snap.tables = _page_checksums(repo, snap, stored.ids)
            index_bytes = _index_new_packs(repo, {**adopted, **stored.writer.new_packs}, progress)
            manifest = _manifest(snap, stored, created_at, len(adopted))
            # the evidence log's head: each backup vouches for the log up to its time (evidence_anchor.py)
            manifest.details["evidence_head"] = EvidenceLog(target.data_dir).head_anchor()
            lock.check()  # still ours: nobody took it over as stale while we worked
            manifest.duration_seconds = round(time.perf_counter() - t0, 3)
            approx = len(repo.sealer.seal(json.dumps(manifest._stored(), default=str).encode(), b"m"))
            manifest.bytes_added = stored.writer.bytes_written + index_bytes + approx
            repo.put_manifest(manifest)
    log.info("backup created", extra={"backup": manifest.id, "size_bytes": manifest.size_bytes,
                                      "bytes_added": manifest.bytes_added, "seconds": manifest.duration_seconds})
    return manifest


def _sealing_processes(repo: Repository, target: Target, stack: contextlib.ExitStack) -> sealworker.Pool | None:
    """The sealing processes for a large SQLite database (closed by stack; killed on an error), else None."""
    if target.backend != "sqlite" or sqlite_bytes(target.sqlite_path) < tuning.SEAL_PROCESS_MIN_BYTES:
        return None
    # started first: their start-up overlaps the capture. They read the snapshot, so
    # it may be the live file itself (this process never opens it: see snapshot.py)
    pool = sealworker.Pool(tuning.SEAL_PROCESSES, repo.sealer.master, repo.sealer.zstd_level, repo.index.keys(),
                           repo.sealer.dictionary)
    stack.push(lambda failed, *_: pool.close(kill=failed is not None))
    return pool


@dataclass
class _Stored:
    ids: list[bytes]  # the snapshot's chunk ids, in order
    chunk_list: list[str]  # the ids of the blobs that hold them
    writer: PackWriter  # closed: its new packs and counts
    chunks_new: int  # the snapshot's chunks stored new (not counting the chunk list's blobs)
    seconds: float


def _store(repo: Repository, snap, pool: sealworker.Pool | None, progress: Progress) -> _Stored:
    """Store the snapshot's new chunks, then its chunk list, in new packs."""
    writer = PackWriter(repo)
    progress("store", 0, snap.size_bytes)
    t_store = time.perf_counter()
    try:
        if pool is not None and snap.engine == "sqlite":
            ids, done = _store_in_processes(repo, snap, writer, progress, pool)
            pool.finish()
            snap.release()  # every page is read: an in-place snapshot lets checkpoints go on
        else:
            ids, done = _store_chunks(repo, snap, writer, progress)
        if done != snap.size_bytes:
            raise BackupError(f"the snapshot changed while it was read ({done} of {snap.size_bytes} "
                              "bytes)", fix="Run again.")
        chunks_new = writer.chunks_new
        chunk_list = []
        flat = b"".join(ids)
        step = tuning.CHUNK_LIST_IDS * 32
        for i in range(0, len(flat), step):
            piece = flat[i:i + step]
            bid = repo.sealer.chunk_id(piece)
            writer.add(bid, piece)
            chunk_list.append(bid.hex())
        writer.flush()
    finally:
        writer.close()
    return _Stored(ids, chunk_list, writer, chunks_new, round(time.perf_counter() - t_store, 3))


def _index_new_packs(repo: Repository, new_packs: dict[str, list[Entry] | bytes], progress: Progress) -> int:
    """An index file for the packs of this run (and those adopted from an unfinished one): its size."""
    progress("index", 0, 1)
    index_bytes = 0
    if new_packs:
        _, index_bytes = repo.chunk_index.write(new_packs)
    repo.forget_index()  # it lacks the new packs: whoever needs it next loads it again
    progress("index", 1, 1)
    return index_bytes


def _manifest(snap, stored: _Stored, created_at: str, adopted: int) -> Manifest:
    writer, ids = stored.writer, stored.ids
    return Manifest(
        id=secrets.token_hex(16), created_at=created_at, engine=snap.engine, format=snap.format,
        size_bytes=snap.size_bytes, chunk_count=len(ids), bytes_added=0,
        schema_revision=snap.schema_revision, erp_version=ERP_VERSION, duration_seconds=0.0,
        source=snap.source, tables=snap.tables, invariants=snap.invariants, chunk_list=stored.chunk_list,
        host=socket.gethostname(), fingerprint_method=snap.fingerprint_method,
        details={**snap.details, "capture_seconds": snap.capture_seconds,
                 "packs_written": len(writer.new_packs), "packs_reused_from_unfinished_run": adopted,
                 "chunks_new": stored.chunks_new, "chunks_reused": len(ids) - stored.chunks_new,
                 "plaintext_bytes_new": writer.plain_new,
                 "store_seconds": stored.seconds,
                 "seal_cpu_seconds": round(writer.seal_cpu, 3)},
        _loader=lambda _m: [c.hex() for c in ids])


def _batches(repo, snap) -> Iterator[list[bytes] | tuple[bytes, int]]:
    """The snapshot file in order, in batches of about SEAL_BATCH bytes: for SQLite (block, chunk
    size) with the block a whole number of page-aligned chunks; otherwise a list of chunks."""
    if snap.engine == "sqlite":
        size = repo.sqlite_chunk(snap.details["page_size"])
        block = max(size, tuning.SEAL_BATCH // size * size)
        with open(snap.path, "rb") as f:
            length = os.fstat(f.fileno()).st_size
            if not length:
                return
            # mapped, not read: the sealing threads hash and compress straight from the page cache
            mm = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_READ)
            with contextlib.suppress(AttributeError, OSError):
                mm.madvise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mm)
            try:
                for off in range(0, length, block):
                    yield view[off:off + block], size
            finally:
                view.release()
                try:
                    mm.close()
                except BufferError:  # a slice still referenced (an error on the way): the GC closes it
                    pass
        return
    cdc = repo.config.get("cdc", {})
    chunks = cdc_chunks(snap.path, repo.sealer.derive(b"cdc-gear"), min_size=int(cdc.get("min", CDC_MIN)),
                        avg_bits=int(cdc.get("avg_bits", CDC_AVG_BITS)), max_size=int(cdc.get("max", CDC_MAX)))
    items, n = [], 0
    for chunk in chunks:
        items.append(chunk)
        n += len(chunk)
        if n >= tuning.SEAL_BATCH:
            yield items
            items, n = [], 0
    if items:
        yield items


def _store_in_processes(repo, snap, writer: PackWriter, progress: Progress,
                        pool: sealworker.Pool) -> tuple[list[bytes], int]:
    """_store_chunks for a large SQLite snapshot: the sealing processes hash, compress and encrypt
    ranges of it, in turn; this thread keeps the first copy of each new chunk and fills the packs."""
    size = repo.sqlite_chunk(snap.details["page_size"])
    step = max(size, tuning.SEAL_RANGE // size * size)
    length, path = snap.size_bytes, str(snap.path)
    ids: list[bytes] = []
    done = shown = 0

    def take(worker: sealworker.Worker, task_length: int) -> None:
        nonlocal done, shown
        id_blob, lengths, sealed, cpu = worker.result()
        writer.seal_cpu += cpu
        got = [id_blob[i:i + 32] for i in range(0, len(id_blob), 32)]
        if len(got) != -(-task_length // size):
            raise BackupError(f"a sealing process answered {len(got)} chunks for {task_length} bytes",
                              fix="Run the backup again.")
        raw_last = task_length - size * (len(got) - 1)
        new = writer.claim_many(got)
        if len(new) == len(got) and all(lengths):  # all new (a first backup): the sealed run as it is
            writer.put_run(got, sealed, lengths, [size] * (len(got) - 1) + [raw_last])
            new_bytes = task_length
        else:
            starts, pos = [], 0
            for n in lengths:
                starts.append(pos)
                pos += n
            view, new_bytes = memoryview(sealed), 0
            for i in new:
                if not lengths[i]:
                    raise BackupError(f"chunk {got[i].hex()} was not sealed although the repository lacks it",
                                      fix="Run the backup again.")
                raw = size if i < len(got) - 1 else raw_last
                writer.put(got[i], view[starts[i]:starts[i] + lengths[i]], raw)
                new_bytes += raw
        writer.count(0, new_bytes)  # the chunks were counted by claim_many
        ids.extend(got)
        done += task_length
        if done - shown >= 8 << 20:
            progress("store", done, length)
            shown = done

    pending: deque[tuple[sealworker.Worker, int]] = deque()
    workers = pool.workers
    for k, off in enumerate(range(0, length, step)):
        worker, task_length = workers[k % len(workers)], min(step, length - off)
        worker.submit(path, off, task_length, size)
        pending.append((worker, task_length))
        while len(pending) > 2 * len(workers):
            take(*pending.popleft())
    while pending:
        take(*pending.popleft())
    progress("store", done, length)
    return ids, done


def _store_chunks(repo, snap, writer: PackWriter, progress: Progress) -> tuple[list[bytes], int]:
    """Cut the snapshot into chunks and store the new ones; (the chunk ids in order, bytes read).
    SEAL_WORKERS threads each hash, compress, encrypt and pack whole batches (hashlib, zstd and
    the uploads release the GIL), filling packs of their own; this thread reads the file."""

    def work(batch) -> tuple[list[bytes], int]:
        cpu = time.thread_time()
        sealer = writer.sealer()
        if isinstance(batch, tuple):
            data, size = batch
            pieces = [data[o:o + size] for o in range(0, len(data), size)]
        else:
            pieces = batch
        chunk_id, put = sealer.chunk_id, writer.put
        ids = [chunk_id(plain) for plain in pieces]
        new = writer.claim_many(ids)  # not in the repository yet, nor taken by another thread
        new_bytes = 0
        for i, sealed in zip(new, sealer.seal_many([pieces[i] for i in new], [chunk_aad(ids[i]) for i in new])):
            put(ids[i], sealed, len(pieces[i]))
            new_bytes += len(pieces[i])
        nbytes = sum(len(p) for p in pieces) if not isinstance(batch, tuple) else len(batch[0])
        writer.count(0, new_bytes)  # the chunks were counted by claim_many
        writer.seal_cpu += time.thread_time() - cpu
        return ids, nbytes

    ids: list[bytes] = []
    done = shown = 0
    with ThreadPoolExecutor(tuning.SEAL_WORKERS, thread_name_prefix="seal") as pool:
        pending: deque[Future] = deque()
        try:
            for batch in _batches(repo, snap):
                pending.append(pool.submit(work, batch))
                while len(pending) > 2 * tuning.SEAL_WORKERS:
                    got, n = pending.popleft().result()
                    ids += got
                    done += n
                    if done - shown >= 8 << 20:
                        progress("store", done, snap.size_bytes)
                        shown = done
            while pending:
                got, n = pending.popleft().result()
                ids += got
                done += n
        finally:
            for f in pending:
                f.cancel()
    progress("store", done, snap.size_bytes)
    return ids, done


def _page_checksums(repo, snap, ids: list[bytes]) -> dict:
    """The sqlite-pages-v1 fingerprint of an SQLite snapshot from its layout: when a chunk is one
    page, a page's digest is its chunk id (computed already); otherwise pages are hashed again."""
    page_size, layout = snap.layout
    key = repo.fingerprint_key
    if repo.sqlite_chunk(page_size) == page_size:
        def run_digests(first: int, last: int) -> bytes:
            if not 1 <= first <= last <= len(ids):
                raise BackupError(f"the snapshot's pages {first}-{last} are past its end ({len(ids)} pages)",
                                  fix="Run again.")
            return b"".join(ids[first - 1:last])

        return fingerprint.checksums(layout, run_digests)
    return fingerprint.sqlite_file_fingerprint(snap.path, key)
