"""An open repository: its store, config and sealer, its index, its manifests, and the operations
on it (each in its own module: create.py, check.py, materialize.py, prune.py)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from ...config import Target
from ...errors import BackupNotFound, ChunkCorrupt
from .. import fingerprint
from ..chunker import MIN_SQLITE_CHUNK, page_chunk_size
from ..crypto import AuthenticationFailed, Sealer
from ..retention import RetentionPolicy
from ..store import NotFound
from . import check, materialize
from .chunks import ChunkReader
from .index import ChunkIndex
from .records import Artifact, CheckResult, Loc, Manifest, Progress, PruneResult

if TYPE_CHECKING:  # repair.py loads the snapshot code (SQLAlchemy): only when a repair runs
    from .repair import RepairResult

log = logging.getLogger("controlplane.backup")


class Repository:
    """Made by open_repository (config.py)."""

    def __init__(self, store, config: dict, sealer: Sealer, pack_size: int, *, lock_wait: float = 0.0):
        self.store = store
        self.config = config
        self.sealer = sealer
        self.pack_size = pack_size
        self.lock_wait = lock_wait
        self.url = store.url
        self.created = False
        self.chunk_index = ChunkIndex(store, sealer)
        self.chunks = ChunkReader(store, sealer, self.chunk_index)

    # ---- the operations -----------------------------------------------------------------------
    def create_backup(self, target: Target, *, progress: Progress | None = None,
                      check_invariants: bool = False) -> Manifest:
        """Capture a consistent snapshot of the target's database and store it; the manifest is written
        last. Appends to the evidence log and records results 'backup.create' in the data directory.
        With check_invariants, erp_core.invariants also run on the snapshot and the manifest records
        what they found (otherwise None: L3 runs them on the restored copy, see snapshot.py)."""
        # imported here, not at the top: creating a backup loads SQLAlchemy (the snapshot) and numpy
        # (content-defined chunking, pack headers), ~300 ms of start-up (python -X importtime) that
        # listing, showing and verifying backups do not need
        from . import create

        return create.create_backup(self, target, progress=progress, check_invariants=check_invariants)

    def check_chunks(self, backup_ids: list[str] | None = None, progress: Progress | None = None) -> CheckResult:
        """Verification level L1: every chunk the backups need is read back, authenticated and hashed.
        Problems name the chunk, its pack and every backup that needs it."""
        return check.check_chunks(self, backup_ids, progress)

    def materialize(self, backup_id: str, dest_dir: Path, progress: Progress | None = None) -> Artifact:
        """Rebuild the captured file (SQLite database, or pg_dump custom-format archive) in dest_dir,
        verifying every chunk; the file appears under its final name only when complete."""
        return materialize.materialize(self, backup_id, dest_dir, progress)

    def prune(self, policy: RetentionPolicy, *, dry_run: bool = False, data_dir: Path | None = None,
              lock_wait: float | None = None, progress: Progress | None = None) -> PruneResult:
        """Forget the backups the policy does not keep, then delete (or repack) the packs no kept
        backup needs. With data_dir, appends to its evidence log and records results 'backup.prune'."""
        from . import prune  # loads numpy (repacking writes packs): see create_backup

        return prune.prune(self, policy, dry_run=dry_run, data_dir=data_dir, lock_wait=lock_wait,
                           progress=progress)

    def repair(self, target: Target, *, forget_unrecoverable: bool = False,
               progress: Progress | None = None) -> RepairResult:
        """Check every chunk (marking the damaged and missing ones, so the next backup stores them
        again), and tell which backups the next backup heals (the live database still holds their
        damaged chunks) and which cannot be recovered; with forget_unrecoverable, forget those."""
        from . import repair  # cuts a snapshot of the live database: SQLAlchemy and numpy (see create_backup)

        return repair.repair(self, target, forget_unrecoverable=forget_unrecoverable, progress=progress)

    # ---- parameters -----------------------------------------------------------------------------
    def sqlite_chunk(self, page_size: int) -> int:
        """The chunk size of an SQLite snapshot with pages of page_size bytes, in this repository."""
        return page_chunk_size(page_size, int(self.config.get("sqlite_min_chunk", MIN_SQLITE_CHUNK)))

    @property
    def fingerprint_key(self) -> bytes:
        """The key of the sqlite-pages-v1 fingerprint (the id key: a page's digest is its chunk id)."""
        return self.sealer.master.ident

    # ---- the index ------------------------------------------------------------------------------
    @property
    def index(self) -> dict[bytes, Loc]:
        """chunk id -> where it is, as last loaded (empty until load_index)."""
        return self.chunk_index.locations

    def load_index(self) -> None:
        self.chunk_index.load()

    def forget_index(self) -> None:
        self.chunk_index.forget()

    # ---- sealed objects -----------------------------------------------------------------------
    def _put_sealed(self, key: str, obj: dict, aad: bytes) -> int:
        data = self.sealer.seal(json.dumps(obj, separators=(",", ":"), default=str).encode(), aad)
        self.store.put(key, data)
        return len(data)

    def _get_sealed(self, key: str, aad: bytes) -> dict:
        data = self.store.get(key)
        return json.loads(self.sealer.open(data, aad))

    # ---- manifests ----------------------------------------------------------------------------
    def _manifest_from(self, d: dict) -> Manifest:
        known = {k: d.get(k) for k in ("id", "created_at", "engine", "format", "size_bytes", "chunk_count",
                                       "bytes_added", "schema_revision", "erp_version", "duration_seconds",
                                       "source", "tables", "invariants")}
        return Manifest(**known, chunk_list=d.get("chunk_list", []), host=d.get("host", ""),
                        details=d.get("details", {}),
                        fingerprint_method=d.get("fingerprint_method") or fingerprint.ROWS,
                        _loader=self._load_chunks)

    def _read_manifest(self, backup_id: str) -> Manifest:
        try:
            d = self._get_sealed(f"snapshots/{backup_id}", b"manifest:" + backup_id.encode())
        except AuthenticationFailed:
            raise ChunkCorrupt(f"the manifest of backup {backup_id} fails authentication (altered or damaged)",
                               fix="Use another backup; run 'erpctl backup verify' to see what else is damaged.",
                               backup=backup_id) from None
        return self._manifest_from(d)

    def put_manifest(self, manifest: Manifest) -> None:
        """Write a backup's manifest: the backup exists from now on."""
        self._put_sealed(f"snapshots/{manifest.id}", manifest._stored(), b"manifest:" + manifest.id.encode())

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
            data = self.chunks.read(bytes.fromhex(blob), backups=[m.id])
            ids.extend(data[i:i + 32].hex() for i in range(0, len(data), 32))
        if len(ids) != m.chunk_count:
            raise ChunkCorrupt(f"backup {m.id}: its chunk list holds {len(ids)} ids, the manifest says "
                               f"{m.chunk_count}", fix="Use another backup.", backup=m.id)
        return ids

    # ---- the store ------------------------------------------------------------------------------
    def clean_store_temporaries(self) -> None:
        """Remove the store's temporary files of processes that are gone."""
        for obj in self.store.temporaries():
            try:
                pid = int(obj.key.rsplit("/", 1)[-1].split("-")[1])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and not psutil.pid_exists(pid):
                self.store.remove_temporary(obj.key)
