"""The evidence log: append-only, hash-chained JSON lines that auditors can verify offline.

Each record holds the SHA-256 of the previous record, its own sequence number and hash.
A head file (the last sequence number and hash) anchors the end, so removing the newest records
is detected as well as altering, removing or reordering any record."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .fsutil import atomic_write_text, locked
from . import layout

GENESIS = "0" * 64
LOG_NAME = layout.name("evidence")
HEAD_NAME = layout.name("evidence_head")


def _canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass
class Problem:
    seq: int | None
    line: int
    kind: str  # altered | removed | reordered | truncated | unreadable
    detail: str

    def as_dict(self):
        return self.__dict__.copy()


class EvidenceLog:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.path = self.dir / LOG_NAME
        self.head_path = self.dir / HEAD_NAME

    def _head(self) -> tuple[int, str]:
        if not self.head_path.exists():
            return 0, GENESIS
        data = json.loads(self.head_path.read_text())
        return data["seq"], data["hash"]

    def append(self, kind: str, data: dict, *, actor: str | None = None, outcome: str = "ok") -> dict:
        """Append one record (what was done and what it proved); durable when this returns."""
        with locked(layout.path(self.dir, "evidence_lock")):
            seq, prev = self._head()
            record = {
                "seq": seq + 1,
                "at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "kind": kind,
                "outcome": outcome,
                "actor": actor or _whoami(),
                "host": os.uname().nodename,
                "data": data,
                "prev": prev,
            }
            record["hash"] = record_hash(record)
            with open(self.path, "ab") as f:
                f.write(_canonical(record) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            atomic_write_text(self.head_path, json.dumps({"seq": record["seq"], "hash": record["hash"]}))
            return record

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def verify(self) -> tuple[int, list[Problem]]:
        """Check the whole chain; returns (records checked, problems, first problem first)."""
        problems: list[Problem] = []
        prev, expected_seq, count = GENESIS, 1, 0
        lines = self.path.read_bytes().splitlines() if self.path.exists() else []
        for lineno, raw in enumerate(lines, start=1):
            try:
                rec = json.loads(raw)
            except ValueError:
                problems.append(Problem(None, lineno, "unreadable", f"line {lineno} is not a JSON record"))
                break
            count += 1
            seq = rec.get("seq")
            if rec.get("hash") != record_hash(rec):
                problems.append(Problem(seq, lineno, "altered", f"record {seq} (line {lineno}) does not match its hash"))
                break
            if seq == expected_seq and rec.get("prev") != prev:
                problems.append(Problem(seq - 1, lineno - 1, "altered",
                                        f"record {seq - 1} was altered or replaced: the link in record {seq} "
                                        f"(line {lineno}) does not match it"))
                break
            if seq != expected_seq:
                later = any(_seq_of(l) == expected_seq for l in lines[lineno:])
                kind = "reordered" if later else "removed"
                detail = (f"record {seq} (line {lineno}) comes before record {expected_seq}" if later else
                          f"record(s) {expected_seq}..{seq - 1 if isinstance(seq, int) else '?'} missing "
                          f"before line {lineno}")
                problems.append(Problem(expected_seq if later else seq, lineno, kind, detail))
                break
            prev, expected_seq = rec["hash"], expected_seq + 1
        if not problems:
            head_seq, head_hash = self._head()
            if head_seq != expected_seq - 1 or (head_seq and head_hash != prev):
                problems.append(Problem(head_seq, len(lines), "truncated",
                                        f"the head says record {head_seq} is the last, the log ends at "
                                        f"{expected_seq - 1}: newest record(s) removed or head replaced"))
        return count, problems


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return str(os.getuid())


def _seq_of(raw: bytes):
    try:
        return json.loads(raw).get("seq")
    except ValueError:
        return None
