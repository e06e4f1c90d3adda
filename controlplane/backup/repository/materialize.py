"""Materializing a backup: the captured file (SQLite database, or pg_dump custom-format archive)
rebuilt in a directory, every chunk verified; the file appears under its final name only when
complete."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ChunkCorrupt
from .. import sealworker
from ..lock import Lock
from ..store import _os_error
from .chunks import corrupt
from .records import Artifact, Loc, Manifest, Progress, noop

if TYPE_CHECKING:
    from .core import Repository


def materialize(repo: Repository, backup_id: str, dest_dir: Path, progress: Progress | None = None) -> Artifact:
    """Repository.materialize."""
    progress = progress or noop
    t0 = time.perf_counter()
    dest_dir = Path(dest_dir)
    with Lock(repo.store, "restore", exclusive=False).acquire(repo.lock_wait):
        repo.load_index()
        repo.chunk_index.adopt_unindexed(repo.chunk_index.pack_listing())
        m = repo.load_manifest(backup_id)
        kind = "sqlite" if m.engine == "sqlite" else "pg_dump"
        path = dest_dir / ("erp.sqlite3" if kind == "sqlite" else "erp.pgdump")
        offsets = _offsets(repo, m)
        dest_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        progress("materialize", 0, m.size_bytes)
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, m.size_bytes)
                _write(repo, m, offsets, fd, partial, progress)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, path)
        except OSError as exc:
            raise _os_error(exc, f"writing the restored file {path}", dest_dir) from None
        finally:
            partial.unlink(missing_ok=True)
    return Artifact(kind, path, m.size_bytes, m.id, round(time.perf_counter() - t0, 3))


def _offsets(repo: Repository, m: Manifest) -> dict[bytes, list[int]]:
    """Where each chunk of the backup goes in the file (a chunk may repeat)."""
    offsets: dict[bytes, list[int]] = defaultdict(list)
    pos = 0
    for cid in (bytes.fromhex(c) for c in m.chunks):
        loc = repo.index.get(cid)
        if loc is None:
            repo.chunks.read(cid, [m.id])  # raises ChunkCorrupt naming it
        offsets[cid].append(pos)
        pos += loc.raw_length
    if pos != m.size_bytes:
        raise ChunkCorrupt(f"backup {m.id}: its chunks add up to {pos} bytes, the manifest says "
                           f"{m.size_bytes}", fix="Use another backup.", backup=m.id)
    return offsets


def _write(repo: Repository, m: Manifest, offsets: dict[bytes, list[int]], fd: int, partial: Path,
           progress: Progress) -> None:
    """Write every chunk at its offsets: a pack with few of them a chunk at a time, the others read
    whole (by the sealing processes when they are many bytes)."""
    index = repo.index
    by_pack: dict[str, list[bytes]] = defaultdict(list)
    for cid in offsets:
        by_pack[index[cid].pack].append(cid)
    done = 0
    whole: dict[str, list[tuple[bytes, Loc, int]]] = {}  # packs read whole
    for name, cids in sorted(by_pack.items()):
        if sum(index[c].length for c in cids) * 2 > repo.pack_size or len(cids) > 64:
            whole[name] = [(c, index[c], off) for c in cids for off in offsets[c]]
            continue
        placed = [(off, repo.chunks.read(cid, [m.id])) for cid in cids for off in offsets[cid]]
        done += sealworker.write_runs(fd, placed)
        progress("materialize", done, m.size_bytes)
    for name, _size, bad in repo.chunks.open_packs(whole, partial):
        if bad:
            cid, reason = bad[0]
            if reason == "its pack is missing":
                repo.chunks.read(cid, [m.id])  # raises ChunkCorrupt naming the pack
            raise corrupt(cid, name, reason, [m.id])
        done += sum(index[c].raw_length for c, _, _ in whole[name])
        progress("materialize", done, m.size_bytes)
