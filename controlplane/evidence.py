"""The evidence log: append-only, hash-chained JSON lines that auditors can verify offline.

Each record holds the SHA-256 of the previous record, its own sequence number and hash.
A head file (the last sequence number and hash) anchors the end, so removing the newest records
is detected as well as altering, removing or reordering any record.

An append is crash-safe. It first writes the head with the record it is about to add (`pending`:
the record's exact line), then appends and fsyncs that line, then writes the head without
`pending`. A process killed anywhere in between leaves one of three states, each recognised only
when the log's bytes are exactly what the pending line says:

- the line is complete in the log (killed before the head moved): the record is kept;
- the line is not in the log, or only a prefix of it is (a torn write): the record was never made.

Both verify (the chain up to the head, the pending record included when complete), and the next
append completes the interrupted one first (head moved, or the torn prefix cut off) and records
that repair as an `evidence.repair` record naming the interrupted record. Anything else in the log
is checked as before, so no real alteration is hidden by a pending head.
Failpoints: evidence.append.after_intent, evidence.append.after_log (controlplane/faults.py)."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .faults import failpoint
from .fsutil import atomic_write_text, fsync_dir, locked
from . import layout

GENESIS = "0" * 64
LOG_NAME = layout.name("evidence")
HEAD_NAME = layout.name("evidence_head")
REPAIR_KIND = "evidence.repair"


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


@dataclass(frozen=True)
class Interrupted:
    """An append that was killed before it finished: its record and what the log holds of it."""
    seq: int
    kind: str
    written: bool  # the whole line is in the log (kept); else it was never made
    keep_bytes: int  # the length of the log without a torn prefix of the line

    def as_dict(self):
        return {"seq": self.seq, "kind": self.kind, "written": self.written}


def interrupted(head: dict, log: bytes) -> Interrupted | None:
    """The interrupted append a head with `pending` describes, if the log's bytes are exactly one of
    the states a killed append leaves (else None: the log is checked as it is)."""
    line = head.get("pending")
    if not isinstance(line, str):
        return None
    full = line.encode() + b"\n"
    rec = json.loads(line)
    cut = log.rfind(b"\n") + 1  # the complete lines; after them a torn write, if any
    fragment = log[cut:]
    if fragment and not full.startswith(fragment):
        return None
    written = not fragment and log.endswith(full)
    before = log[:len(log) - len(full)] if written else log[:cut]
    if not _ends_at(before, head):  # the record the append followed must be the log's last
        return None
    return Interrupted(rec["seq"], rec["kind"], written, len(log) if written else cut)


def _ends_at(log: bytes, head: dict) -> bool:
    lines = log.splitlines()
    if not lines:
        return head.get("seq") == 0
    try:
        last = json.loads(lines[-1])
    except ValueError:
        return False
    return last.get("seq") == head.get("seq") and last.get("hash") == head.get("hash")


class EvidenceLog:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.path = self.dir / LOG_NAME
        self.head_path = self.dir / HEAD_NAME

    def _head_file(self) -> dict:
        if not self.head_path.exists():
            return {"seq": 0, "hash": GENESIS}
        return json.loads(self.head_path.read_text())

    def _log_bytes(self) -> bytes:
        return self.path.read_bytes() if self.path.exists() else b""

    def interrupted(self) -> Interrupted | None:
        """The append that was killed before it finished, if any (the next append completes it)."""
        return interrupted(self._head_file(), self._log_bytes())

    def _head(self) -> tuple[int, str]:
        """The last record's sequence number and hash, an interrupted append's record included when
        its line is complete in the log."""
        head = self._head_file()
        crash = interrupted(head, self._log_bytes())
        if crash is not None and crash.written:
            rec = json.loads(head["pending"])
            return rec["seq"], rec["hash"]
        return head["seq"], head["hash"]

    def append(self, kind: str, data: dict, *, actor: str | None = None, outcome: str = "ok") -> dict:
        """Append one record (what was done and what it proved); durable when this returns. An append
        interrupted before is completed first, and its repair recorded."""
        with locked(layout.path(self.dir, "evidence_lock")):
            head = self._head_file()
            if "pending" in head:
                head = self._repair(head)
            return self._append(head, kind, data, actor=actor, outcome=outcome)

    def _append(self, head: dict, kind: str, data: dict, *, actor: str | None, outcome: str) -> dict:
        record = {
            "seq": head["seq"] + 1,
            "at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "kind": kind,
            "outcome": outcome,
            "actor": actor or _whoami(),
            "host": os.uname().nodename,
            "data": data,
            "prev": head["hash"],
        }
        record["hash"] = record_hash(record)
        line = _canonical(record)
        atomic_write_text(self.head_path, json.dumps({**_anchor(head), "pending": line.decode()}))
        failpoint("evidence.append.after_intent")
        with open(self.path, "ab") as f:
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        failpoint("evidence.append.after_log")
        atomic_write_text(self.head_path, json.dumps(_anchor(record)))
        return record

    def _repair(self, head: dict) -> dict:
        """Complete an interrupted append (keep its complete line, or cut its torn prefix) and record it."""
        crash = interrupted(head, self._log_bytes())
        if crash is None:  # the log is not a state an append leaves: leave it for verify to name
            atomic_write_text(self.head_path, json.dumps(_anchor(head)))
            return _anchor(head)
        if crash.written:
            done = json.loads(head["pending"])
            found = f"record {crash.seq} ({crash.kind}) complete in the log; the head moved to it"
        else:
            done = head
            if self.path.exists():  # the first append of a log may have died before creating it
                with open(self.path, "r+b") as f:
                    f.truncate(crash.keep_bytes)
                    os.fsync(f.fileno())
                fsync_dir(self.dir)
            found = f"record {crash.seq} ({crash.kind}) never written; the head left at record {head['seq']}"
        atomic_write_text(self.head_path, json.dumps(_anchor(done)))
        self._append(_anchor(done), REPAIR_KIND, {"interrupted": crash.as_dict(), "repair": found},
                     actor=None, outcome="repaired")
        return self._head_file()

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def verify(self) -> tuple[int, list[Problem]]:
        """Check the whole chain; returns (records checked, problems, first problem first)."""
        problems: list[Problem] = []
        prev, expected_seq, count = GENESIS, 1, 0
        raw = self._log_bytes()
        crash = interrupted(self._head_file(), raw)
        if crash is not None:
            raw = raw[:crash.keep_bytes]  # a torn prefix of an append that never finished is no record
        lines = raw.splitlines()
        for lineno, line in enumerate(lines, start=1):
            try:
                rec = json.loads(line)
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


def _anchor(record: dict) -> dict:
    return {"seq": record["seq"], "hash": record["hash"]}


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
