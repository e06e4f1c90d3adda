"""The backup repository: content-addressed, deduplicated, compressed, encrypted chunks in packs,
an index of chunk -> pack, and one manifest per backup, in a directory or an S3 bucket.

    config                  plaintext JSON: format, chunking and pack parameters, key slots
                            (the random master key wrapped by a passphrase (argon2id) or a key file)
    data/ab/<sha256>        packs (see pack.py), each self-describing through its sealed header
    index/<sha256>          sealed chunk -> (pack, offset, length, raw length) for a set of packs
    snapshots/<backup id>   sealed manifests, written last and atomically: a backup exists when its
                            manifest does, and every chunk it names is in an indexed pack by then
    locks/<lock id>         shared locks (backup, check, restore) and exclusive ones (prune)
    dictionaries/<id>       format 2: the sealed zstd dictionary the config names (dictionary.py)

A backup is a state machine whose state is the repository itself: packs are uploaded as they
fill, then an index for them, then the manifest. Killed at any point, it leaves packs (and maybe
an index) but no manifest; the next run finds those packs by listing data/, reads their headers
and reuses their chunks. Prune forgets manifests first and deletes packs only under the exclusive
lock, after a new index without them is written, so a chunk a live manifest needs is never
deleted, not even while a backup runs (a running backup holds a shared lock: prune then only
forgets manifests and defers the deletion of packs to its next run).

    repo = open_repository("file:///srv/backups", passphrase="...")
    manifest = repo.create_backup(target)
    repo.check_chunks()                  # verification level L1
    repo.materialize(manifest.id, dir)   # the SQLite file or pg_dump archive, every chunk verified
    repo.prune(RetentionPolicy(keep_last=7, keep_daily=14))
"""

from __future__ import annotations

import datetime as dt
import contextlib
import hashlib
import json
import logging
import mmap
import os
import secrets
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import zstandard

from erp_core import __version__ as ERP_VERSION

from .. import results
from ..config import Target, write_private
from ..errors import BackupError, BackupNotFound, ChunkCorrupt, RepositoryLocked, RepositoryNotInitialised, WrongKey
from ..evidence import EvidenceLog
from . import crypto, dictionary, fingerprint, sealworker
from .chunker import CDC_AVG_BITS, CDC_MAX, CDC_MIN, MIN_SQLITE_CHUNK, cdc_chunks, page_chunk_size
from .crypto import AuthenticationFailed, MasterKey, Sealer
from .lock import Lock
from .pack import ENTRY, Entry, PackBuilder, PackCorrupt, chunk_aad, decode_entries, name_of_key, pack_key, read_header
from .retention import RetentionPolicy
from .retention import select as select_retention
from .snapshot import capture, sqlite_bytes
from .store import FileStore, NotFound, open_store

log = logging.getLogger("controlplane.backup")

FORMAT_VERSION = 2  # the newest format this code reads: 2 = 1 with a compression dictionary (dictionary.py)
DEFAULT_PACK_SIZE = 8 << 20
# zstd level of new repositories (kept in their config; a repository keeps the one it was made with).
# Chunks are single 4 KiB pages: on the bench's 600 MB ERP database, level -1 compresses them in
# 0.9 s of CPU against 1.5 s at level 1 and 1.6 s at level 3 (the most of what sealing costs),
# to 28 % of their size instead of 25 %.
DEFAULT_ZSTD_LEVEL = -1
CHUNK_LIST_IDS = 2048  # ids per chunk-list blob (64 KiB)
REPACK_UNUSED_RATIO = 0.4
UPLOAD_WORKERS = 2
SEAL_WORKERS = 2  # sealing threads (hashing, zstd and uploads release the GIL; the main thread reads)
SEAL_BATCH = 1 << 20  # bytes of the snapshot per unit of work of a sealing thread
# SQLite databases at least this big are sealed by SEAL_PROCESSES processes (see sealworker.py), in
# ranges of SEAL_RANGE bytes; smaller ones (and pg_dump files, cut by content here) by threads
SEAL_PROCESS_MIN_BYTES = 32 << 20
SEAL_PROCESSES = 2
SEAL_RANGE = sealworker.SEAL_RANGE
# an L1 check or a restore reading at least this many bytes of packs opens them in SEAL_PROCESSES
# processes too (each authenticates, decompresses, hashes and writes the chunks of a pack)
OPEN_PROCESS_MIN_BYTES = 32 << 20

# progress(phase, done, total): phases "capture", "store", "index", "check", "materialize", "prune";
# done/total in bytes for store/check/materialize, in items otherwise; total may be None.
Progress = Callable[[str, int, "int | None"], None]


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _noop(_phase, _done, _total):
    pass


# ---- results of the API -------------------------------------------------------------------------

@dataclass
class Manifest:
    id: str
    created_at: str
    engine: str
    format: str
    size_bytes: int
    chunk_count: int
    bytes_added: int
    schema_revision: str | None
    erp_version: str
    duration_seconds: float
    source: str
    tables: dict
    invariants: list | None  # violations found at capture; None: not checked then (L3 checks them)
    chunk_list: list[str] = field(default_factory=list)  # ids of the blobs that hold the chunk ids
    host: str = ""
    details: dict = field(default_factory=dict)
    # how `tables` was computed (fingerprint.METHODS); manifests written before it was recorded
    # were all taken with fingerprint.ROWS
    fingerprint_method: str = fingerprint.ROWS
    _chunks: list[str] | None = field(default=None, repr=False, compare=False)
    _loader: Callable | None = field(default=None, repr=False, compare=False)

    @property
    def chunks(self) -> list[str]:
        """The ordered chunk ids (hex) whose plaintexts, concatenated, are the captured file."""
        if self._chunks is None:
            if self._loader is None:
                raise BackupError(f"backup {self.id}: the chunk list is not loaded")
            self._chunks = self._loader(self)
        return self._chunks

    @property
    def invariants_ok(self) -> bool | None:
        """Whether erp_core.invariants held at capture; None when they were not checked then."""
        return None if self.invariants is None else not self.invariants

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def summary(self) -> dict:
        """Everything but the chunk list."""
        out = {k: getattr(self, k) for k in ("id", "created_at", "engine", "format", "size_bytes", "chunk_count",
                                              "bytes_added", "schema_revision", "erp_version", "duration_seconds",
                                              "source", "host", "tables", "fingerprint_method", "invariants",
                                              "details")}
        out["invariants_ok"] = self.invariants_ok
        out["total_rows"] = sum(t["rows"] for t in self.tables.values())
        return out

    def as_dict(self) -> dict:
        return {**self.summary(), "chunk_list": list(self.chunk_list), "chunks": list(self.chunks)}

    def _stored(self) -> dict:
        d = self.summary()
        d.pop("invariants_ok")
        d.pop("total_rows")
        d["chunk_list"] = list(self.chunk_list)
        return d


@dataclass
class CheckResult:
    ok: bool
    chunks_checked: int
    bytes_read: int
    duration_seconds: float
    problems: list[dict]
    backups_checked: list[str] = field(default_factory=list)
    packs_read: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Artifact:
    kind: str  # sqlite | pg_dump
    path: Path
    size_bytes: int = 0
    backup_id: str = ""
    duration_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "size_bytes": self.size_bytes,
                "backup_id": self.backup_id, "duration_seconds": self.duration_seconds}


@dataclass
class PruneResult:
    dry_run: bool
    policy: dict
    kept: list[str]
    forgotten: list[str]
    reasons: dict
    packs_deleted: int = 0
    packs_repacked: int = 0
    bytes_freed: int = 0
    chunks_deleted: int = 0
    deferred: bool = False  # packs not deleted: a backup was running (the next prune does it)
    note: str = ""
    duration_seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Loc(NamedTuple):  # where a chunk is (one per chunk of the repository in the index: a tuple)
    pack: str
    offset: int
    length: int
    raw_length: int


# ---- the repository -----------------------------------------------------------------------------

class Repository:
    def __init__(self, store, config: dict, master: MasterKey, *, lock_wait: float = 0.0):
        self.store = store
        self.config = config
        entry = config.get("dictionary")  # see dictionary.py
        self.sealer = Sealer(master, int(config.get("zstd_level", 3)),
                             dictionary.load(store, Sealer(master), entry) if entry else None)
        self.pack_size = int(config.get("pack_size", DEFAULT_PACK_SIZE))
        self.lock_wait = lock_wait
        self.url = store.url
        self.created = False
        self.index: dict[bytes, Loc] = {}
        self.index_files: list[str] = []
        self.indexed_packs: set[str] = set()

    def _sqlite_chunk(self, page_size: int) -> int:
        """The chunk size of an SQLite snapshot with pages of page_size bytes, in this repository."""
        return page_chunk_size(page_size, int(self.config.get("sqlite_min_chunk", MIN_SQLITE_CHUNK)))

    @property
    def fingerprint_key(self) -> bytes:
        """The key of the sqlite-pages-v1 fingerprint (the id key: a page's digest is its chunk id)."""
        return self.sealer.master.ident

    # ---- sealed objects -----------------------------------------------------------------------
    def _put_sealed(self, key: str, obj: dict, aad: bytes) -> int:
        data = self.sealer.seal(json.dumps(obj, separators=(",", ":"), default=str).encode(), aad)
        self.store.put(key, data)
        return len(data)

    def _get_sealed(self, key: str, aad: bytes) -> dict:
        data = self.store.get(key)
        return json.loads(self.sealer.open(data, aad))

    # ---- index --------------------------------------------------------------------------------
    def _encode_index(self, packs: dict[str, list[Entry] | bytes]) -> bytes:
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

    @staticmethod
    def _decode_index(data: bytes) -> dict[str, list[Entry]]:
        (n,), pos, packs = struct.unpack_from("<I", data), 4, {}
        for _ in range(n):
            name = data[pos:pos + 32].hex()
            (count,) = struct.unpack_from("<I", data, pos + 32)
            pos += 36
            packs[name] = decode_entries(data[pos:pos + count * ENTRY.size])
            pos += count * ENTRY.size
        return packs

    def _write_index(self, packs: dict[str, list[Entry]]) -> tuple[str, int]:
        sealed = self.sealer.seal(self._encode_index(packs), b"index")
        name = hashlib.sha256(sealed).hexdigest()
        self.store.put(f"index/{name}", sealed)
        return name, len(sealed)

    def _add_to_index(self, name: str, entries: Iterable[Entry]) -> None:
        self.indexed_packs.add(name)
        setdefault = self.index.setdefault
        for cid, offset, length, raw_length in entries:
            setdefault(cid, Loc(name, offset, length, raw_length))

    def forget_index(self) -> None:
        self.index, self.index_files, self.indexed_packs = {}, [], set()

    def load_index(self) -> None:
        self.index, self.index_files, self.indexed_packs = {}, [], set()
        for obj in self.store.list("index/"):
            try:
                packs = self._decode_index(self.sealer.open(self.store.get(obj.key), b"index"))
            except NotFound:
                continue
            except (AuthenticationFailed, PackCorrupt, struct.error, zstandard.ZstdError) as exc:
                log.warning("skipping an unreadable index file (the packs' own headers stand in for it)",
                            extra={"index": obj.key, "error": str(exc)})
                continue
            self.index_files.append(obj.key)
            for name, entries in packs.items():
                self._add_to_index(name, entries)

    def _pack_listing(self) -> dict[str, int]:
        return {name_of_key(o.key): o.size for o in self.store.list("data/")}

    def _adopt_unindexed(self, listing: dict[str, int]) -> dict[str, list[Entry]]:
        """Packs in the store that no index names (a run killed before writing its index): read their
        headers and index their chunks, so the next run reuses what was uploaded."""
        adopted = {}
        for name in sorted(set(listing) - self.indexed_packs):
            try:
                entries = read_header(self.store, self.sealer, pack_key(name))
            except (PackCorrupt, NotFound) as exc:
                log.warning("ignoring an unreadable pack", extra={"pack": name, "error": str(exc)})
                continue
            adopted[name] = entries
            self._add_to_index(name, entries)
        if adopted:
            log.info("reusing packs of an unfinished run", extra={"packs": len(adopted)})
        return adopted

    # ---- manifests ----------------------------------------------------------------------------
    def _manifest_from(self, d: dict) -> Manifest:
        known = {k: d.get(k) for k in ("id", "created_at", "engine", "format", "size_bytes", "chunk_count",
                                       "bytes_added", "schema_revision", "erp_version", "duration_seconds",
                                       "source", "tables", "invariants")}
        return Manifest(**known, chunk_list=d.get("chunk_list", []), host=d.get("host", ""),
                        details=d.get("details", {}), fingerprint_method=d.get("fingerprint_method") or fingerprint.ROWS,
                        _loader=self._load_chunks)

    def _read_manifest(self, backup_id: str) -> Manifest:
        try:
            d = self._get_sealed(f"snapshots/{backup_id}", b"manifest:" + backup_id.encode())
        except AuthenticationFailed:
            raise ChunkCorrupt(f"the manifest of backup {backup_id} fails authentication (altered or damaged)",
                               fix="Use another backup; run 'erpctl backup verify' to see what else is damaged.",
                               backup=backup_id) from None
        return self._manifest_from(d)

    def manifest_ids(self) -> list[str]:
        return [o.key.split("/", 1)[1] for o in self.store.list("snapshots/")]

    def list_manifests(self) -> list[Manifest]:
        """Every backup, oldest first (a manifest that cannot be read is logged and left out)."""
        out = []
        for backup_id in self.manifest_ids():
            try:
                out.append(self._read_manifest(backup_id))
            except NotFound:
                continue
            except ChunkCorrupt as exc:
                log.warning("unreadable manifest", extra={"backup": backup_id, "error": exc.detail})
        return sorted(out, key=lambda m: (m.created_at, m.id))

    def load_manifest(self, backup_id: str) -> Manifest:
        """The backup with this id or unique id prefix (also 'latest')."""
        ids = self.manifest_ids()
        if backup_id == "latest":
            manifests = self.list_manifests()
            if not manifests:
                raise BackupNotFound(f"the repository {self.url} holds no backup",
                                     fix="Create one with 'erpctl backup create'.")
            return manifests[-1]
        matches = [i for i in ids if i.startswith(backup_id)] if backup_id else []
        if backup_id in ids:
            matches = [backup_id]
        if not matches:
            raise BackupNotFound(f"no backup {backup_id!r} in {self.url}",
                                 fix="List the backups with 'erpctl backup list'.")
        if len(matches) > 1:
            raise BackupNotFound(f"the id prefix {backup_id!r} matches {len(matches)} backups: "
                                 f"{', '.join(m[:12] for m in matches[:5])}",
                                 fix="Give more characters of the id.")
        try:
            return self._read_manifest(matches[0])
        except NotFound:
            raise BackupNotFound(f"backup {backup_id!r} was removed meanwhile", fix="List the backups again.") from None

    def _load_chunks(self, m: Manifest) -> list[str]:
        if not self.index:
            self.load_index()
        ids: list[str] = []
        for blob in m.chunk_list:
            data = self._read_chunk(bytes.fromhex(blob), backups=[m.id])
            ids.extend(data[i:i + 32].hex() for i in range(0, len(data), 32))
        if len(ids) != m.chunk_count:
            raise ChunkCorrupt(f"backup {m.id}: its chunk list holds {len(ids)} ids, the manifest says "
                               f"{m.chunk_count}", fix="Use another backup.", backup=m.id)
        return ids

    def _read_chunk(self, cid: bytes, backups: list[str]) -> bytes:
        loc = self.index.get(cid)
        if loc is None:
            raise ChunkCorrupt(f"chunk {cid.hex()} (needed by {', '.join(backups)}) is in no pack of the index",
                               fix="The backup is damaged; use another one.", chunk=cid.hex(), backups=backups)
        try:
            sealed = self.store.get_range(pack_key(loc.pack), loc.offset, loc.length)
        except NotFound:
            raise ChunkCorrupt(f"pack {loc.pack} holding chunk {cid.hex()} is missing",
                               fix="The backup is damaged; use another one.", chunk=cid.hex(), pack=loc.pack,
                               backups=backups) from None
        return self._open_chunk(cid, sealed, loc, backups)

    def _open_chunk(self, cid: bytes, sealed: bytes, loc: Loc, backups: list[str]) -> bytes:
        reason = sealworker.chunk_problem(self.sealer, cid, sealed, loc.length, loc.raw_length)
        if isinstance(reason, str):
            raise _corrupt(cid, loc.pack, reason, backups)
        return reason

    def _open_packs(self, work: dict[str, list[tuple[bytes, Loc, int]]], dest: Path | None = None
                    ) -> Iterator[tuple[str, int, list[tuple[bytes, str]]]]:
        """Open every chunk of `work` (pack -> [(chunk id, location, offset in dest or -1)]): each read
        back, authenticated, decompressed and hashed, and written at its offset of dest (an existing
        file) when given. Yields (pack, bytes of it read, [(chunk id, why it is not good)]) pack by
        pack; a missing pack yields 0 bytes and "its pack is missing" for each of its chunks. Many
        bytes are opened by the sealing processes, a pack at a time each (their answers stay small)."""
        total = sum(loc.length for chunks in work.values() for _, loc, _ in chunks)
        pool = (sealworker.Pool(SEAL_PROCESSES, self.sealer.master, self.sealer.zstd_level, [],
                                self.sealer.dictionary)
                if total >= OPEN_PROCESS_MIN_BYTES else None)
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

    # ---- create -------------------------------------------------------------------------------
    def create_backup(self, target: Target, *, progress: Progress | None = None,
                      check_invariants: bool = False) -> Manifest:
        """Capture a consistent snapshot of the target's database and store it; the manifest is written
        last. Appends to the evidence log and records results 'backup.create' in the data directory.
        With check_invariants, erp_core.invariants also run on the snapshot and the manifest records
        what they found (otherwise None: L3 runs them on the restored copy, see snapshot.py)."""
        t0 = time.perf_counter()
        progress = progress or _noop
        try:
            manifest = self._create(target, progress, t0, check_invariants)
        except Exception as exc:
            _record(target.data_dir, "backup.create", False, {
                "repository": self.url, "error": getattr(exc, "detail", str(exc)), "error_type": type(exc).__name__,
                "duration_seconds": round(time.perf_counter() - t0, 3)})
            raise
        _record(target.data_dir, "backup.create", True, {
            "repository": self.url, "backup_id": manifest.id, "engine": manifest.engine,
            "size_bytes": manifest.size_bytes, "bytes_added": manifest.bytes_added,
            "chunk_count": manifest.chunk_count, "duration_seconds": manifest.duration_seconds,
            "schema_revision": manifest.schema_revision, "invariants_ok": manifest.invariants_ok,
            "invariant_violations": None if manifest.invariants is None else len(manifest.invariants),
            "tables": {t: v["rows"] for t, v in manifest.tables.items()}})
        return manifest

    def _create(self, target: Target, progress: Progress, t0: float, check_invariants: bool) -> Manifest:
        created_at = _now_iso()
        with Lock(self.store, "backup", exclusive=False).acquire(self.lock_wait) as lock:
            self._clean_store_temporaries()
            self.load_index()
            adopted = self._adopt_unindexed(self._pack_listing())
            progress("capture", 0, None)
            with contextlib.ExitStack() as stack:
                pool = None
                min_chunk = int(self.config.get("sqlite_min_chunk", MIN_SQLITE_CHUNK))
                if target.backend == "sqlite" and sqlite_bytes(target.sqlite_path) >= SEAL_PROCESS_MIN_BYTES:
                    # started first: their start-up overlaps the capture. They read the snapshot, so
                    # it may be the live file itself (this process never opens it: see snapshot.py)
                    pool = sealworker.Pool(SEAL_PROCESSES, self.sealer.master, self.sealer.zstd_level,
                                           self.index.keys(), self.sealer.dictionary)
                    stack.push(lambda failed, *_: pool.close(kill=failed is not None))
                snap = stack.enter_context(capture(
                    target, check_invariants, in_place_min_page=min_chunk if pool is not None else None,
                    before_copy=pool and (lambda: pool.preseal(target.sqlite_path, min_chunk))))
                progress("capture", 1, 1)
                writer = _PackWriter(self, progress)
                progress("store", 0, snap.size_bytes)
                t_store = time.perf_counter()
                try:
                    if pool is not None and snap.engine == "sqlite":
                        ids, done = self._store_in_processes(snap, writer, progress, pool)
                        pool.finish()
                        snap.release()  # every page is read: an in-place snapshot lets checkpoints go on
                    else:
                        ids, done = self._store_chunks(snap, writer, progress)
                    if done != snap.size_bytes:
                        raise BackupError(f"the snapshot changed while it was read ({done} of {snap.size_bytes} "
                                          "bytes)", fix="Run again.")
                    data_new = writer.chunks_new
                    chunk_list = []
                    flat = b"".join(ids)
                    step = CHUNK_LIST_IDS * 32
                    for i in range(0, len(flat), step):
                        piece = flat[i:i + step]
                        bid = self.sealer.chunk_id(piece)
                        writer.add(bid, piece)
                        chunk_list.append(bid.hex())
                    writer.flush()
                finally:
                    writer.close()
                t_stored = time.perf_counter()
                snap.wait_facts()
                if snap.layout is not None:
                    snap.tables = self._page_checksums(snap, ids)
                progress("index", 0, 1)
                new_packs = {**adopted, **writer.new_packs}
                index_bytes = 0
                if new_packs:
                    _, index_bytes = self._write_index(new_packs)
                self.forget_index()  # it lacks the new packs: whoever needs it next loads it again
                progress("index", 1, 1)
                backup_id = secrets.token_hex(16)
                manifest = Manifest(
                    id=backup_id, created_at=created_at, engine=snap.engine, format=snap.format,
                    size_bytes=snap.size_bytes, chunk_count=len(ids), bytes_added=0,
                    schema_revision=snap.schema_revision, erp_version=ERP_VERSION, duration_seconds=0.0,
                    source=snap.source, tables=snap.tables, invariants=snap.invariants, chunk_list=chunk_list,
                    host=socket.gethostname(), fingerprint_method=snap.fingerprint_method,
                    details={**snap.details, "capture_seconds": snap.capture_seconds,
                             "packs_written": len(writer.new_packs), "packs_reused_from_unfinished_run": len(adopted),
                             "chunks_new": data_new, "chunks_reused": len(ids) - data_new,
                             "plaintext_bytes_new": writer.plain_new,
                             "store_seconds": round(t_stored - t_store, 3),
                             "seal_cpu_seconds": round(writer.seal_cpu, 3)},
                    _loader=lambda _m: [c.hex() for c in ids])
                lock.check()  # still ours: nobody took it over as stale while we worked
                manifest.duration_seconds = round(time.perf_counter() - t0, 3)
                approx = len(self.sealer.seal(json.dumps(manifest._stored(), default=str).encode(), b"m"))
                manifest.bytes_added = writer.bytes_written + index_bytes + approx
                self._put_sealed(f"snapshots/{backup_id}", manifest._stored(), b"manifest:" + backup_id.encode())
        log.info("backup created", extra={"backup": manifest.id, "size_bytes": manifest.size_bytes,
                                          "bytes_added": manifest.bytes_added, "seconds": manifest.duration_seconds})
        return manifest

    def _batches(self, snap) -> Iterator[list[bytes] | tuple[bytes, int]]:
        """The snapshot file in order, in batches of about SEAL_BATCH bytes: for SQLite (block, chunk
        size) with the block a whole number of page-aligned chunks; otherwise a list of chunks."""
        if snap.engine == "sqlite":
            size = self._sqlite_chunk(snap.details["page_size"])
            block = max(size, SEAL_BATCH // size * size)
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
        cdc = self.config.get("cdc", {})
        chunks = cdc_chunks(snap.path, self.sealer.derive(b"cdc-gear"), min_size=int(cdc.get("min", CDC_MIN)),
                            avg_bits=int(cdc.get("avg_bits", CDC_AVG_BITS)), max_size=int(cdc.get("max", CDC_MAX)))
        items, n = [], 0
        for chunk in chunks:
            items.append(chunk)
            n += len(chunk)
            if n >= SEAL_BATCH:
                yield items
                items, n = [], 0
        if items:
            yield items

    def _store_in_processes(self, snap, writer: _PackWriter, progress: Progress,
                            pool: sealworker.Pool) -> tuple[list[bytes], int]:
        """_store_chunks for a large SQLite snapshot: the sealing processes hash, compress and encrypt
        ranges of it, in turn; this thread keeps the first copy of each new chunk and fills the packs."""
        size = self._sqlite_chunk(snap.details["page_size"])
        step = max(size, SEAL_RANGE // size * size)
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

    def _store_chunks(self, snap, writer: _PackWriter, progress: Progress) -> tuple[list[bytes], int]:
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
        with ThreadPoolExecutor(SEAL_WORKERS, thread_name_prefix="seal") as pool:
            pending: deque[Future] = deque()
            try:
                for batch in self._batches(snap):
                    pending.append(pool.submit(work, batch))
                    while len(pending) > 2 * SEAL_WORKERS:
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

    def _page_checksums(self, snap, ids: list[bytes]) -> dict:
        """The sqlite-pages-v1 fingerprint of an SQLite snapshot from its layout: when a chunk is one
        page, a page's digest is its chunk id (computed already); otherwise pages are hashed again."""
        page_size, layout = snap.layout
        key = self.fingerprint_key
        if self._sqlite_chunk(page_size) == page_size:
            def run_digests(first: int, last: int) -> bytes:
                if not 1 <= first <= last <= len(ids):
                    raise BackupError(f"the snapshot's pages {first}-{last} are past its end ({len(ids)} pages)",
                                      fix="Run again.")
                return b"".join(ids[first - 1:last])

            return fingerprint.checksums(layout, run_digests)
        return fingerprint.sqlite_file_fingerprint(snap.path, key)

    def _clean_store_temporaries(self) -> None:
        import psutil

        for obj in self.store.temporaries():
            try:
                pid = int(obj.key.rsplit("/", 1)[-1].split("-")[1])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and not psutil.pid_exists(pid):
                self.store.remove_temporary(obj.key)

    # ---- L1: chunks ---------------------------------------------------------------------------
    def _needed(self, manifests: list[Manifest], problems: list[dict]) -> dict[bytes, set[str]]:
        needed: dict[bytes, set[str]] = defaultdict(set)
        for m in manifests:
            for blob in m.chunk_list:
                needed[bytes.fromhex(blob)].add(m.id)
            try:
                for c in m.chunks:
                    needed[bytes.fromhex(c)].add(m.id)
            except ChunkCorrupt as exc:
                problems.append({"chunk": exc.extra.get("chunk", ""), "pack": exc.extra.get("pack", ""),
                                 "reason": f"the chunk list of backup {m.id} cannot be read: {exc.detail}",
                                 "backups": [m.id]})
        return needed

    def check_chunks(self, backup_ids: list[str] | None = None, progress: Progress | None = None) -> CheckResult:
        """Verification level L1: every chunk the backups need is read back, authenticated and hashed.
        Problems name the chunk, its pack and every backup that needs it."""
        progress = progress or _noop
        t0 = time.perf_counter()
        with Lock(self.store, "check", exclusive=False).acquire(self.lock_wait):
            self.load_index()
            listing = self._pack_listing()
            self._adopt_unindexed(listing)
            manifests = ([self.load_manifest(b) for b in backup_ids] if backup_ids is not None
                         else self.list_manifests())
            problems: list[dict] = []
            needed = self._needed(manifests, problems)
            by_pack: dict[str, list[tuple[bytes, Loc]]] = defaultdict(list)
            for cid, users in needed.items():
                loc = self.index.get(cid)
                if loc is None:
                    problems.append({"chunk": cid.hex(), "pack": "", "reason": "the chunk is in no pack of the index",
                                     "backups": sorted(users)})
                elif loc.pack not in listing:
                    problems.append({"chunk": cid.hex(), "pack": loc.pack, "reason": "its pack is missing",
                                     "backups": sorted(users)})
                else:
                    by_pack[loc.pack].append((cid, loc))
            total = sum(listing[p] for p in by_pack)
            bytes_read = checked = packs_read = 0
            progress("check", 0, total)
            work = {name: [(cid, loc, -1) for cid, loc in chunks] for name, chunks in by_pack.items()}
            for name, size, bad in self._open_packs(work):
                bytes_read += size
                packs_read += size > 0
                checked += len(work[name]) if size else 0
                problems += [{"chunk": cid.hex(), "pack": name, "reason": reason, "backups": sorted(needed[cid])}
                             for cid, reason in bad]
                progress("check", bytes_read, total)
        problems.sort(key=lambda p: (p["pack"], p["chunk"]))
        return CheckResult(ok=not problems, chunks_checked=checked, bytes_read=bytes_read,
                           duration_seconds=round(time.perf_counter() - t0, 3), problems=problems,
                           backups_checked=[m.id for m in manifests], packs_read=packs_read)

    # ---- materialize --------------------------------------------------------------------------
    def materialize(self, backup_id: str, dest_dir: Path, progress: Progress | None = None) -> Artifact:
        """Rebuild the captured file (SQLite database, or pg_dump custom-format archive) in dest_dir,
        verifying every chunk; the file appears under its final name only when complete."""
        progress = progress or _noop
        t0 = time.perf_counter()
        dest_dir = Path(dest_dir)
        with Lock(self.store, "restore", exclusive=False).acquire(self.lock_wait):
            self.load_index()
            self._adopt_unindexed(self._pack_listing())
            m = self.load_manifest(backup_id)
            kind = "sqlite" if m.engine == "sqlite" else "pg_dump"
            path = dest_dir / ("erp.sqlite3" if kind == "sqlite" else "erp.pgdump")
            ids = [bytes.fromhex(c) for c in m.chunks]
            offsets: dict[bytes, list[int]] = defaultdict(list)
            pos = 0
            for cid in ids:
                loc = self.index.get(cid)
                if loc is None:
                    self._read_chunk(cid, [m.id])  # raises ChunkCorrupt naming it
                offsets[cid].append(pos)
                pos += loc.raw_length
            if pos != m.size_bytes:
                raise ChunkCorrupt(f"backup {m.id}: its chunks add up to {pos} bytes, the manifest says "
                                   f"{m.size_bytes}", fix="Use another backup.", backup=m.id)
            by_pack: dict[str, list[bytes]] = defaultdict(list)
            for cid in offsets:
                by_pack[self.index[cid].pack].append(cid)
            dest_dir.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
            done = 0
            progress("materialize", 0, m.size_bytes)
            try:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.ftruncate(fd, m.size_bytes)
                    whole: dict[str, list[tuple[bytes, Loc, int]]] = {}  # packs read whole
                    for name, cids in sorted(by_pack.items()):
                        if sum(self.index[c].length for c in cids) * 2 > self.pack_size or len(cids) > 64:
                            whole[name] = [(c, self.index[c], off) for c in cids for off in offsets[c]]
                            continue
                        placed = [(off, self._read_chunk(cid, [m.id])) for cid in cids for off in offsets[cid]]
                        done += sealworker.write_runs(fd, placed)
                        progress("materialize", done, m.size_bytes)
                    for name, _size, bad in self._open_packs(whole, partial):
                        if bad:
                            cid, reason = bad[0]
                            if reason == "its pack is missing":
                                self._read_chunk(cid, [m.id])  # raises ChunkCorrupt naming the pack
                            raise _corrupt(cid, name, reason, [m.id])
                        done += sum(self.index[c].raw_length for c, _, _ in whole[name])
                        progress("materialize", done, m.size_bytes)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(partial, path)
            except OSError as exc:
                from .store import _os_error

                raise _os_error(exc, f"writing the restored file {path}", dest_dir) from None
            finally:
                partial.unlink(missing_ok=True)
        return Artifact(kind, path, m.size_bytes, m.id, round(time.perf_counter() - t0, 3))

    # ---- prune --------------------------------------------------------------------------------
    def prune(self, policy: RetentionPolicy, *, dry_run: bool = False, data_dir: Path | None = None,
              lock_wait: float | None = None, progress: Progress | None = None) -> PruneResult:
        """Forget the backups the policy does not keep, then delete (or repack) the packs no kept
        backup needs. With data_dir, appends to its evidence log and records results 'backup.prune'."""
        t0 = time.perf_counter()
        try:
            result = self._prune(policy, dry_run, self.lock_wait if lock_wait is None else lock_wait,
                                 progress or _noop)
        except Exception as exc:
            if data_dir is not None and not dry_run:
                _record(data_dir, "backup.prune", False, {"repository": self.url, "policy": policy.as_dict(),
                                                          "error": getattr(exc, "detail", str(exc)),
                                                          "error_type": type(exc).__name__})
            raise
        result.duration_seconds = round(time.perf_counter() - t0, 3)
        if data_dir is not None and not dry_run:
            _record(data_dir, "backup.prune", True, {"repository": self.url, **result.as_dict()})
        return result

    def _prune(self, policy: RetentionPolicy, dry_run: bool, lock_wait: float, progress: Progress) -> PruneResult:
        manifests = self.list_manifests()
        unreadable = set(self.manifest_ids()) - {m.id for m in manifests}
        keep, forget, reasons = select_retention(manifests, policy)
        result = PruneResult(dry_run, policy.as_dict(), [m.id for m in keep], [m.id for m in forget], reasons)
        if dry_run:
            self.load_index()
            plan = self._gc_plan(keep, self._pack_listing())
            result.packs_deleted, result.packs_repacked = len(plan["dead"]), len(plan["repack"])
            result.bytes_freed, result.chunks_deleted = plan["bytes_freed"], plan["chunks_deleted"]
            result.note = "dry run: nothing was changed"
            return result
        try:
            lock = Lock(self.store, "prune", exclusive=True).acquire(lock_wait)
            exclusive = True
        except RepositoryLocked as exc:
            holders = exc.extra.get("holders", [])
            if any(h.get("exclusive") for h in holders):
                raise
            lock = Lock(self.store, "prune-forget", exclusive=False).acquire(lock_wait)
            exclusive = False
        with lock:
            for i, m in enumerate(forget):
                self.store.delete(f"snapshots/{m.id}")
                log.debug("prune step", extra={"step": "forget", "backup": m.id})
                progress("prune", i + 1, len(forget))
            if not exclusive:
                result.deferred = True
                result.note = ("a backup is running: backups were forgotten, their packs are deleted by the "
                               "next prune")
                return result
            if unreadable:
                result.deferred = True
                result.note = (f"{len(unreadable)} manifest(s) cannot be read ({', '.join(sorted(unreadable))}); "
                               "no pack was deleted")
                return result
            self.load_index()
            listing = self._pack_listing()
            self._adopt_unindexed(listing)
            keep = self.list_manifests()  # what is live now, under the exclusive lock
            plan = self._gc_plan(keep, listing)
            self._gc(plan, listing, lock, progress)
            self._clean_store_temporaries()
            result.packs_deleted, result.packs_repacked = len(plan["dead"]), len(plan["repack"])
            result.bytes_freed, result.chunks_deleted = plan["bytes_freed"], plan["chunks_deleted"]
        return result

    def _gc_plan(self, keep: list[Manifest], listing: dict[str, int]) -> dict:
        problems: list[dict] = []
        needed = set(self._needed(keep, problems))
        if problems:
            raise ChunkCorrupt("cannot tell which chunks the kept backups need: " + problems[0]["reason"],
                               fix="Run 'erpctl backup verify --level 1'; nothing was deleted.")
        per_pack: dict[str, list[tuple[bytes, Loc]]] = defaultdict(list)
        for cid, loc in self.index.items():
            per_pack[loc.pack].append((cid, loc))
        dead, repack, bytes_freed, chunks_deleted = [], [], 0, 0
        for name, size in listing.items():
            entries = per_pack.get(name, [])
            used = [(c, loc) for c, loc in entries if c in needed]
            if not used:
                dead.append(name)
                bytes_freed += size
                chunks_deleted += len(entries)
                continue
            unused_bytes = sum(loc.length for c, loc in entries if c not in needed)
            if unused_bytes and unused_bytes >= REPACK_UNUSED_RATIO * size:
                repack.append(name)
                bytes_freed += unused_bytes
                chunks_deleted += len(entries) - len(used)
        return {"needed": needed, "per_pack": per_pack, "dead": dead, "repack": repack,
                "bytes_freed": bytes_freed, "chunks_deleted": chunks_deleted}

    def _gc(self, plan: dict, listing: dict[str, int], lock: Lock, progress: Progress) -> None:
        needed, per_pack = plan["needed"], plan["per_pack"]
        # 1. copy the live chunks of half-empty packs into new packs (sealed bytes are copied as they are)
        writer = _PackWriter(self, _noop)
        try:
            for name in plan["repack"]:
                data = self.store.get(pack_key(name))
                for cid, loc in per_pack[name]:
                    if cid in needed and cid not in writer.placed:
                        sealed = data[loc.offset:loc.offset + loc.length]
                        if isinstance(sealworker.chunk_problem(self.sealer, cid, sealed, loc.length, loc.raw_length),
                                      str):
                            raise ChunkCorrupt(f"chunk {cid.hex()} in pack {name} is damaged; prune stopped before "
                                               "deleting anything", fix="Run 'erpctl backup verify --level 1'.",
                                               chunk=cid.hex(), pack=name)
                        writer.add_sealed(cid, sealed, loc.raw_length)
            writer.flush()
        finally:
            writer.close()
        # 2. one new index of every surviving pack, then the old index files, then the dead packs
        gone = set(plan["dead"]) | set(plan["repack"])
        survivors: dict[str, list[Entry] | bytes] = {}
        for name in listing:
            if name in gone:
                continue
            survivors[name] = [Entry(c, loc.offset, loc.length, loc.raw_length) for c, loc in per_pack.get(name, [])
                               if self.index.get(c) == loc]
        survivors.update(writer.new_packs)
        survivors = {k: v for k, v in survivors.items() if v}
        lock.check()
        old_indexes = list(self.index_files)
        new_index = None
        if survivors:
            new_index, _ = self._write_index(survivors)
            log.debug("prune step", extra={"step": "index written", "index": new_index})
        for key in old_indexes:
            if key != f"index/{new_index}":
                self.store.delete(key)
                log.debug("prune step", extra={"step": "old index deleted", "index": key})
        for i, name in enumerate(sorted(gone)):
            self.store.delete(pack_key(name))
            log.debug("prune step", extra={"step": "pack deleted", "pack": name})
            progress("prune", i + 1, len(gone))
        self.load_index()


def _corrupt(cid: bytes, pack: str, reason: str, backups: list[str]) -> ChunkCorrupt:
    return ChunkCorrupt(f"chunk {cid.hex()} in pack {pack}: {reason} (needed by {', '.join(backups)})",
                        fix="This backup cannot be restored as stored; use another one, and run "
                            "'erpctl backup verify --level 1' to list every damaged backup.",
                        chunk=cid.hex(), pack=pack, backups=backups)


class _PackWriter:
    """Fills packs with new chunks (deduplicated against the index and against each other) and
    uploads them in the background, at most UPLOAD_WORKERS at a time. Safe to feed from several
    threads: each fills a pack of its own (with its own Sealer: a zstd context is single-threaded)."""

    def __init__(self, repo: Repository, progress: Progress):
        self.repo = repo
        self.pool = ThreadPoolExecutor(UPLOAD_WORKERS, thread_name_prefix="pack-upload")
        self.slots = threading.BoundedSemaphore(UPLOAD_WORKERS)  # packs being uploaded
        self.pending: list[Future] = []
        self.mutex = threading.Lock()
        self.local = threading.local()
        self.builders: list[PackBuilder] = []
        self.new_packs: dict[str, bytes] = {}  # pack name -> its entries, encoded (pack.encode_entries)
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


def _wait_first(futures: list[Future]) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait

    wait([f for f in futures if not f.done()], return_when=FIRST_COMPLETED)


def _record(data_dir: Path, key: str, ok: bool, data: dict) -> None:
    """The evidence log and the latest-results file of the data directory (best effort: a failing
    record is logged, and never hides the operation's own outcome)."""
    try:
        EvidenceLog(data_dir).append(key, data, outcome="ok" if ok else "failed")
    except Exception as exc:  # noqa: BLE001
        log.warning("could not append to the evidence log", extra={"error": str(exc)})
    try:
        fields = {k: v for k, v in data.items() if not isinstance(v, (dict, list)) or k in ("tables",)}
        if "duration_seconds" in data:
            fields["duration"] = data["duration_seconds"]
        results.record(data_dir, key, ok, **fields)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not record the result", extra={"error": str(exc)})


# ---- opening and creating ---------------------------------------------------------------------

def _new_config(pack_size: int | None, zstd_level: int | None = None) -> dict:
    return {"format": "erpctl-backup-repository", "version": 1, "id": secrets.token_hex(16),
            "created_at": _now_iso(), "pack_size": int(pack_size or DEFAULT_PACK_SIZE),
            "zstd_level": DEFAULT_ZSTD_LEVEL if zstd_level is None else int(zstd_level),
            "sqlite_min_chunk": MIN_SQLITE_CHUNK,
            "cdc": {"window": 64, "min": CDC_MIN, "avg_bits": CDC_AVG_BITS, "max": CDC_MAX},
            "encryption": "AES-256-GCM, chunk ids BLAKE2b-256 keyed", "compression": "zstd", "keys": []}


def open_repository(url: str, *, passphrase: str | None = None, key_file: Path | None = None,
                    create: bool = False, data_dir: Path | None = None, kdf: dict | None = None,
                    pack_size: int | None = None, lock_wait: float = 0.0, zstd_level: int | None = None,
                    dictionary_from: Path | None = None) -> Repository:
    """Open (or with create=True, create if missing) the repository at file:///abs/path or
    s3://bucket/prefix. A repository created with dictionary_from (an SQLite database) gets a zstd
    dictionary trained on its pages (dictionary.py: plain reads of the file, so no SQLite connection
    of this process may have it open). The passphrase defaults to env
    ERPCTL_BACKUP_PASSPHRASE and the key file to env ERPCTL_BACKUP_KEY_FILE. Creating with a key file that does not exist writes a new random one
    (mode 0600). A wrong key raises WrongKey before anything is written."""
    passphrase = passphrase if passphrase is not None else os.environ.get("ERPCTL_BACKUP_PASSPHRASE") or None
    if key_file is None and os.environ.get("ERPCTL_BACKUP_KEY_FILE"):
        key_file = Path(os.environ["ERPCTL_BACKUP_KEY_FILE"])
    store = open_store(url, data_dir)
    try:
        raw = store.get("config")
    except NotFound:
        raw = None
    if raw is None:
        if not create:
            raise RepositoryNotInitialised(f"there is no backup repository at {store.describe()}",
                                           fix="Create it with 'erpctl backup init --repo URL' (or check --repo / "
                                               "ERPCTL_BACKUP_REPO).")
        return _create(store, passphrase, key_file, kdf, pack_size, lock_wait, zstd_level, dictionary_from)
    try:
        config = json.loads(raw)
        assert config.get("format") == "erpctl-backup-repository"
    except (ValueError, AssertionError):
        raise BackupError(f"{store.describe()} holds a 'config' that is not an erpctl backup repository's",
                          fix="Point --repo at an erpctl repository, or at an empty location to create one.") from None
    if int(config.get("version", 0)) > FORMAT_VERSION:
        raise BackupError(f"the repository format {config['version']} is newer than this erpctl understands",
                          fix="Upgrade erpctl.")
    master = _unlock(config, store, passphrase, key_file)
    return Repository(store, config, master, lock_wait=lock_wait)


def _key_secret(key_file: Path | None) -> bytes | None:
    if key_file is None:
        return None
    try:
        return crypto.read_key_file(key_file)
    except FileNotFoundError:
        raise WrongKey(f"the key file {key_file} does not exist",
                       fix="Pass the repository's key file (--key-file or ERPCTL_BACKUP_KEY_FILE).") from None
    except (OSError, ValueError) as exc:
        raise WrongKey(f"cannot use the key file {key_file}: {exc}", fix="Pass the repository's key file.") from None


def _unlock(config: dict, store, passphrase: str | None, key_file: Path | None) -> MasterKey:
    if passphrase is None and key_file is None:
        raise WrongKey(f"the backup repository at {store.describe()} is encrypted and no key was given",
                       fix="Set ERPCTL_BACKUP_PASSPHRASE (or pass --key-file / set ERPCTL_BACKUP_KEY_FILE).")
    secret = _key_secret(key_file)
    for slot in config.get("keys", []):
        try:
            return crypto.unwrap(slot, passphrase=passphrase, key_file_secret=secret)
        except AuthenticationFailed:
            continue
    what = " and ".join(x for x, given in (("the passphrase", passphrase), (f"the key file {key_file}", key_file))
                        if given)
    raise WrongKey(f"{what} does not open the backup repository at {store.describe()}; nothing was changed",
                   fix="Use the passphrase (ERPCTL_BACKUP_PASSPHRASE) or key file the repository was created with.")


def _create(store, passphrase, key_file, kdf, pack_size, lock_wait, zstd_level=None, dictionary_from=None
            ) -> Repository:
    if passphrase is None and key_file is None:
        raise WrongKey("a new backup repository needs a passphrase or a key file",
                       fix="Set ERPCTL_BACKUP_PASSPHRASE, or pass --key-file PATH (created if it does not exist).")
    if isinstance(store, FileStore):
        store.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        store.exists_root()
    master = MasterKey.generate()
    trained = (dictionary.train(dictionary.sample_pages(dictionary_from, MIN_SQLITE_CHUNK))
               if dictionary_from is not None else None)
    config = _new_config(pack_size, dictionary.ZSTD_LEVEL if zstd_level is None and trained else zstd_level)
    if trained is not None:  # stored before the config that names it: a config never names a missing one
        config["dictionary"], sealed = dictionary.seal(Sealer(master), trained)
        config["version"] = 2
        store.put_new(config["dictionary"]["key"], sealed)
    if passphrase is not None:
        config["keys"].append(crypto.wrap_with_passphrase(master, passphrase, kdf))
    if key_file is not None:
        key_file = Path(key_file)
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            write_private(key_file, crypto.new_key_file_text())
        config["keys"].append(crypto.wrap_with_key_file(master, _key_secret(key_file)))
    if not store.put_new("config", json.dumps(config, indent=1).encode()):
        # another run created it meanwhile: open that one (with the key given)
        config = json.loads(store.get("config"))
        return Repository(store, config, _unlock(config, store, passphrase, key_file), lock_wait=lock_wait)
    repo = Repository(store, config, master, lock_wait=lock_wait)
    repo.created = True
    log.info("backup repository created", extra={"repository": store.url, "id": config["id"]})
    return repo
