"""What the repository's operations return (a backup's Manifest, an L1 CheckResult, a
materialized Artifact, a PruneResult), where a chunk is (Loc), and how an operation's outcome is
recorded in the data directory (evidence log and latest results)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ... import results
from ...errors import BackupError
from ...evidence import EvidenceLog
from .. import fingerprint

log = logging.getLogger("controlplane.backup")

# progress(phase, done, total): phases "capture", "store", "index", "check", "materialize", "prune";
# done/total in bytes for store/check/materialize, in items otherwise; total may be None.
Progress = Callable[[str, int, "int | None"], None]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def noop(_phase, _done, _total):
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
    chunks_marked: int = 0  # damaged or missing chunks marked by this check (the next backup stores them)

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


def record_outcome(data_dir: Path, key: str, ok: bool, data: dict) -> None:
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

