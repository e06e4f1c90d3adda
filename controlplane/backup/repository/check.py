"""Verification level L1: every chunk the backups need is read back, authenticated and hashed;
each problem names the chunk, its pack and every backup that needs it. A damaged or missing chunk
is marked (damage.py), so the next backup stores it again from the live database."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING

from ...errors import ChunkCorrupt
from ..lock import Lock
from .damage import markable
from .records import CheckResult, Loc, Manifest, Progress, noop

if TYPE_CHECKING:
    from .core import Repository


def needed(manifests: list[Manifest], problems: list[dict]) -> dict[bytes, set[str]]:
    """Every chunk the manifests need (their chunk lists' blobs too) -> the backups that need it; a
    chunk list that cannot be read is a problem."""
    out: dict[bytes, set[str]] = defaultdict(set)
    for m in manifests:
        for blob in m.chunk_list:
            out[bytes.fromhex(blob)].add(m.id)
        try:
            for c in m.chunks:
                out[bytes.fromhex(c)].add(m.id)
        except ChunkCorrupt as exc:
            problems.append({"chunk": exc.extra.get("chunk", ""), "pack": exc.extra.get("pack", ""),
                             "reason": f"the chunk list of backup {m.id} cannot be read: {exc.detail}",
                             "backups": [m.id]})
    return out


def check_chunks(repo: Repository, backup_ids: list[str] | None = None,
                 progress: Progress | None = None) -> CheckResult:
    """Repository.check_chunks."""
    progress = progress or noop
    t0 = time.perf_counter()
    with Lock(repo.store, "check", exclusive=False).acquire(repo.lock_wait):
        repo.load_index()
        listing = repo.chunk_index.pack_listing()
        repo.chunk_index.adopt_unindexed(listing)
        manifests = ([repo.load_manifest(b) for b in backup_ids] if backup_ids is not None
                     else repo.list_manifests())
        problems: list[dict] = []
        users_of = needed(manifests, problems)
        by_pack = _locate(repo, users_of, listing, problems)
        total = sum(listing[p] for p in by_pack)
        bytes_read = checked = packs_read = 0
        progress("check", 0, total)
        work = {name: [(cid, loc, -1) for cid, loc in chunks] for name, chunks in by_pack.items()}
        for name, size, bad in repo.chunks.open_packs(work):
            bytes_read += size
            packs_read += size > 0
            checked += len(work[name]) if size else 0
            problems += [{"chunk": cid.hex(), "pack": name, "reason": reason, "backups": sorted(users_of[cid])}
                         for cid, reason in bad]
            progress("check", bytes_read, total)
        marked = repo.chunk_index.damaged.write(markable(problems))
    problems.sort(key=lambda p: (p["pack"], p["chunk"]))
    return CheckResult(ok=not problems, chunks_checked=checked, bytes_read=bytes_read,
                       duration_seconds=round(time.perf_counter() - t0, 3), problems=problems,
                       backups_checked=[m.id for m in manifests], packs_read=packs_read, chunks_marked=marked)


def _locate(repo: Repository, users_of: dict[bytes, set[str]], listing: dict[str, int],
            problems: list[dict]) -> dict[str, list[tuple[bytes, Loc]]]:
    """The chunks by the pack that holds them; a chunk in no pack, or in a missing one, is a problem."""
    by_pack: dict[str, list[tuple[bytes, Loc]]] = defaultdict(list)
    for cid, users in users_of.items():
        loc = repo.index.get(cid)
        marked = repo.chunk_index.damaged.packs_of(cid) if loc is None else []
        if marked:
            problems.append({"chunk": cid.hex(), "pack": marked[0], "marked": True,
                             "reason": "damaged or missing (marked by an earlier check; not stored again yet)",
                             "backups": sorted(users)})
        elif loc is None:
            problems.append({"chunk": cid.hex(), "pack": "", "reason": "the chunk is in no pack of the index",
                             "backups": sorted(users)})
        elif loc.pack not in listing:
            problems.append({"chunk": cid.hex(), "pack": loc.pack, "reason": "its pack is missing",
                             "backups": sorted(users)})
        else:
            by_pack[loc.pack].append((cid, loc))
    return by_pack
