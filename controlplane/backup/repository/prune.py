"""Pruning: forget the backups a retention policy does not keep, then delete (or repack) the packs
no kept backup needs -- only under the exclusive lock, and only after a new index without them is
written, so a chunk a live manifest needs is never deleted. While a backup runs (a shared lock),
prune only forgets manifests and leaves the packs to its next run."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ChunkCorrupt, RepositoryLocked
from ...faults import failpoint
from .. import sealworker
from ..lock import Lock
from ..pack import Entry, pack_key
from ..retention import RetentionPolicy
from ..retention import select as select_retention
from . import tuning
from .check import needed
from .packwriter import PackWriter
from .records import Loc, Manifest, Progress, PruneResult, noop, record_outcome

if TYPE_CHECKING:
    from .core import Repository

log = logging.getLogger("controlplane.backup")


def prune(repo: Repository, policy: RetentionPolicy, *, dry_run: bool = False, data_dir: Path | None = None,
          lock_wait: float | None = None, progress: Progress | None = None) -> PruneResult:
    """Repository.prune: with data_dir, its outcome recorded ('backup.prune')."""
    t0 = time.perf_counter()
    try:
        result = _prune(repo, policy, dry_run, repo.lock_wait if lock_wait is None else lock_wait,
                        progress or noop)
    except Exception as exc:
        if data_dir is not None and not dry_run:
            record_outcome(data_dir, "backup.prune", False, {"repository": repo.url, "policy": policy.as_dict(),
                                                             "error": getattr(exc, "detail", str(exc)),
                                                             "error_type": type(exc).__name__})
        raise
    result.duration_seconds = round(time.perf_counter() - t0, 3)
    if data_dir is not None and not dry_run:
        record_outcome(data_dir, "backup.prune", True, {"repository": repo.url, **result.as_dict()})
    return result


def _prune(repo: Repository, policy: RetentionPolicy, dry_run: bool, lock_wait: float,
           progress: Progress) -> PruneResult:
    manifests = repo.list_manifests()
    unreadable = set(repo.manifest_ids()) - {m.id for m in manifests}
    keep, forget, reasons = select_retention(manifests, policy)
    result = PruneResult(dry_run, policy.as_dict(), [m.id for m in keep], [m.id for m in forget], reasons)
    if dry_run:
        repo.load_index()
        _GcPlan.of(repo, keep, repo.chunk_index.pack_listing()).report(result)
        result.note = "dry run: nothing was changed"
        return result
    lock, exclusive = _lock(repo, lock_wait)
    with lock:
        for i, m in enumerate(forget):
            repo.store.delete(f"snapshots/{m.id}")
            log.debug("prune step", extra={"step": "forget", "backup": m.id})
            failpoint("backup.prune.step")
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
        repo.load_index()
        listing = repo.chunk_index.pack_listing()
        repo.chunk_index.adopt_unindexed(listing)
        keep = repo.list_manifests()  # what is live now, under the exclusive lock
        plan = _GcPlan.of(repo, keep, listing)
        _gc(repo, plan, listing, lock, progress)
        repo.clean_store_temporaries()
        plan.report(result)
    return result


def _lock(repo: Repository, lock_wait: float) -> tuple[Lock, bool]:
    """The exclusive prune lock, or while a backup holds a shared one, a shared lock to forget
    manifests only: (the lock, whether it is exclusive)."""
    try:
        return Lock(repo.store, "prune", exclusive=True).acquire(lock_wait), True
    except RepositoryLocked as exc:
        holders = exc.extra.get("holders", [])
        if any(h.get("exclusive") for h in holders):
            raise
        return Lock(repo.store, "prune-forget", exclusive=False).acquire(lock_wait), False


@dataclass
class _GcPlan:
    needed: set[bytes]  # the chunks the kept backups need
    per_pack: dict[str, list[tuple[bytes, Loc]]]  # every indexed chunk, by pack
    dead: list[str]  # packs no kept backup needs
    repack: list[str]  # packs with enough unused bytes to copy their live chunks into new packs
    bytes_freed: int
    chunks_deleted: int

    @classmethod
    def of(cls, repo: Repository, keep: list[Manifest], listing: dict[str, int]) -> _GcPlan:
        problems: list[dict] = []
        live = set(needed(keep, problems))
        if problems:
            raise ChunkCorrupt("cannot tell which chunks the kept backups need: " + problems[0]["reason"],
                               fix="Run 'erpctl backup verify --level 1'; nothing was deleted.")
        per_pack: dict[str, list[tuple[bytes, Loc]]] = defaultdict(list)
        for cid, loc in repo.index.items():
            per_pack[loc.pack].append((cid, loc))
        plan = cls(live, per_pack, [], [], 0, 0)
        for name, size in listing.items():
            entries = per_pack.get(name, [])
            used = [(c, loc) for c, loc in entries if c in live]
            if not used:
                plan.dead.append(name)
                plan.bytes_freed += size
                plan.chunks_deleted += len(entries)
                continue
            unused_bytes = sum(loc.length for c, loc in entries if c not in live)
            if unused_bytes and unused_bytes >= tuning.REPACK_UNUSED_RATIO * size:
                plan.repack.append(name)
                plan.bytes_freed += unused_bytes
                plan.chunks_deleted += len(entries) - len(used)
        return plan

    def report(self, result: PruneResult) -> None:
        result.packs_deleted, result.packs_repacked = len(self.dead), len(self.repack)
        result.bytes_freed, result.chunks_deleted = self.bytes_freed, self.chunks_deleted


def _gc(repo: Repository, plan: _GcPlan, listing: dict[str, int], lock: Lock, progress: Progress) -> None:
    new_packs = _repack(repo, plan)
    # one new index of every surviving pack, then the old index files, then the dead packs
    gone = set(plan.dead) | set(plan.repack)
    survivors: dict[str, list[Entry] | bytes] = {}
    for name in listing:
        if name in gone:
            continue
        survivors[name] = [Entry(c, loc.offset, loc.length, loc.raw_length)
                           for c, loc in plan.per_pack.get(name, []) if repo.index.get(c) == loc]
    survivors.update(new_packs)
    survivors = {k: v for k, v in survivors.items() if v}
    lock.check()
    old_indexes = list(repo.chunk_index.files)
    new_index = None
    if survivors:
        new_index, _ = repo.chunk_index.write(survivors)
        log.debug("prune step", extra={"step": "index written", "index": new_index})
        failpoint("backup.prune.step")
    for key in old_indexes:
        if key != f"index/{new_index}":
            repo.store.delete(key)
            log.debug("prune step", extra={"step": "old index deleted", "index": key})
            failpoint("backup.prune.step")
    for i, name in enumerate(sorted(gone)):
        repo.store.delete(pack_key(name))
        log.debug("prune step", extra={"step": "pack deleted", "pack": name})
        failpoint("backup.prune.step")
        progress("prune", i + 1, len(gone))
    damaged = repo.chunk_index.damaged
    if damaged.files:  # the new index names no damaged location: keep the marks of chunks still lacking
        damaged.rewrite([(c.hex(), p, why) for (c, p), why in damaged.marks.items()
                         if c in plan.needed and repo.index.get(c) is None])
    repo.load_index()


def _repack(repo: Repository, plan: _GcPlan) -> dict[str, bytes]:
    """Copy the live chunks of the packs to repack into new packs (sealed bytes are copied as they
    are, after checking them); the new packs' entries."""
    writer = PackWriter(repo)
    try:
        for name in plan.repack:
            data = repo.store.get(pack_key(name))
            for cid, loc in plan.per_pack[name]:
                if cid in plan.needed and cid not in writer.placed:
                    sealed = data[loc.offset:loc.offset + loc.length]
                    if isinstance(sealworker.chunk_problem(repo.sealer, cid, sealed, loc.length, loc.raw_length),
                                  str):
                        raise ChunkCorrupt(f"chunk {cid.hex()} in pack {name} is damaged; prune stopped before "
                                           "deleting anything", fix="Run 'erpctl backup verify --level 1'.",
                                           chunk=cid.hex(), pack=name)
                    writer.add_sealed(cid, sealed, loc.raw_length)
        writer.flush()
    finally:
        writer.close()
    return writer.new_packs
