"""Repairing a damaged repository: check every chunk (L1, which marks the damaged and missing ones,
see damage.py), then tell which damage the next backup heals and which is lost for good.

A marked chunk is stored again by the next backup if the live database still holds the same bytes
(chunks are content-addressed: the same id). So the live database is cut into chunks the way a
backup would (nothing is stored): a damaged chunk among them is healed by the next backup, one
that is not is lost, and every backup that needs a lost chunk cannot be restored any more. Those
may be forgotten (their manifests deleted; prune then frees their packs), and that is recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...config import Target
from ..lock import Lock
from ..snapshot import capture
from . import tuning
from .records import Progress, noop, record_outcome

if TYPE_CHECKING:
    from .core import Repository

log = logging.getLogger("controlplane.backup")


@dataclass
class RepairResult:
    ok: bool  # no damage left that the next backup does not heal (or it was forgotten)
    chunks_checked: int
    damaged: list[dict]  # each problem of the check, with "heals": whether the live database holds it
    chunks_marked: int  # marked by this run (marks of earlier checks stand too)
    healed_by_next_backup: list[str]  # backups whose every damaged chunk the next backup stores again
    unrecoverable: list[str]  # backups needing a chunk nothing holds any more
    forgotten: list[str] = field(default_factory=list)
    live_chunks: int = 0  # chunks of the live database compared (0: the repository was healthy)
    duration_seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def live_chunk_ids(repo: Repository, target: Target) -> set[bytes]:
    """The ids of every chunk a backup of the live database would need now, its chunk list's
    blobs too; read from a snapshot, nothing stored."""
    from .create import _batches

    ids: list[bytes] = []
    with capture(target) as snap:
        chunk_id = repo.sealer.chunk_id
        for batch in _batches(repo, snap):
            if isinstance(batch, tuple):
                data, size = batch
                ids.extend(chunk_id(data[o:o + size]) for o in range(0, len(data), size))
            else:
                ids.extend(chunk_id(piece) for piece in batch)
    flat, step = b"".join(ids), tuning.CHUNK_LIST_IDS * 32
    return set(ids) | {chunk_id(flat[i:i + step]) for i in range(0, len(flat), step)}


def repair(repo: Repository, target: Target, *, forget_unrecoverable: bool = False,
           progress: Progress | None = None) -> RepairResult:
    """Repository.repair: with the outcome recorded ('backup.repair') when anything was damaged."""
    t0 = time.perf_counter()
    check = repo.check_chunks(progress=progress or noop)
    damaged = [dict(p) for p in check.problems]
    result = RepairResult(check.ok, check.chunks_checked, damaged, check.chunks_marked, [], [])
    if check.ok:
        result.duration_seconds = round(time.perf_counter() - t0, 3)
        return result
    live = live_chunk_ids(repo, target)
    result.live_chunks = len(live)
    lost: set[str] = set()
    touched: set[str] = set()
    for p in damaged:
        chunk = p.get("chunk") or ""
        p["heals"] = bool(chunk) and bytes.fromhex(chunk) in live
        touched.update(p.get("backups") or [])
        if not p["heals"]:
            lost.update(p.get("backups") or [])
    result.unrecoverable = sorted(lost)
    result.healed_by_next_backup = sorted(touched - lost)
    if forget_unrecoverable and lost:
        with Lock(repo.store, "repair-forget", exclusive=False).acquire(repo.lock_wait):
            for backup_id in sorted(lost):
                repo.store.delete(f"snapshots/{backup_id}")
                log.info("forgot an unrecoverable backup", extra={"backup": backup_id})
        result.forgotten = sorted(lost)
    result.ok = not lost or bool(result.forgotten)
    result.duration_seconds = round(time.perf_counter() - t0, 3)
    record_outcome(target.data_dir, "backup.repair", result.ok, {
        "repository": repo.url, "chunks_checked": result.chunks_checked, "damaged_chunks": len(damaged),
        "chunks_marked": result.chunks_marked, "heal_by_next_backup": result.healed_by_next_backup,
        "unrecoverable": result.unrecoverable, "forgotten": result.forgotten,
        "damaged": [{k: p.get(k) for k in ("chunk", "pack", "reason", "heals")} for p in damaged[:20]],
        "duration_seconds": result.duration_seconds})
    return result
