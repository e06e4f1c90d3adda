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
Failpoints: evidence.append.after_intent, evidence.append.after_log (controlplane/faults.py).

Signatures. Every record is signed with the installation's Ed25519 key (controlplane/evidence_keys.py:
the key lives outside the data directory): `key_id` names the key, `sig` signs the record's `hash`,
which covers every other field. Records written before records were signed have neither: they verify
as "unsigned up to record N"; an unsigned record after a signed one is named as tampering.

Who. `actor` is the authenticated operator (the `actor` an operation passes, else the setting
`operator`, ERPCTL_OPERATOR), else the OS user; `os_user` is always the OS user.

Anchors. The head (sequence number, hash, signature) is also written where the data directory's owner
alone cannot rewrite it: into every backup's manifest (`head_anchor`, read by the backup code) and,
when the setting `evidence_anchor` names one, as a new object in a second store after every append
(controlplane/evidence_anchor.py). `erpctl evidence verify --anchors` checks the log against them, so a
removed tail, a removed log or a chain rewritten without the key is named by the anchor that disagrees.

Published files. `attest_file(log, kind, path, data)` records a file's SHA-256 (a drill report, an
artifact) when it is published; `attestations(log, digest)` finds the records of a digest, and
`erpctl evidence check-file FILE` says whether a file is unchanged since."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import evidence_keys, layout
from .errors import ControlPlaneError
from .faults import failpoint
from .fsutil import atomic_write_text, fsync_dir, locked
from .installation import Installation

log = logging.getLogger("controlplane.evidence")

GENESIS = "0" * 64
LOG_NAME = layout.name("evidence")
HEAD_NAME = layout.name("evidence_head")
REPAIR_KIND = "evidence.repair"


def _canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


UNHASHED = ("hash", "sig")


def record_hash(record: dict) -> str:
    """The SHA-256 of every field but `hash` and `sig` (the signature signs this hash)."""
    body = {k: v for k, v in record.items() if k not in UNHASHED}
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass
class Problem:
    seq: int | None
    line: int
    kind: str  # altered | removed | reordered | truncated | unreadable | unsigned | bad-signature | unknown-key | anchor
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


@dataclass
class Report:
    """What `EvidenceLog.check` found: the records read, the problems (first first), how far the log
    is unsigned (records before signing began) and which keys signed it."""
    records: int
    problems: list[Problem]
    unsigned_through: int = 0
    signed: int = 0
    keys: list[str] = field(default_factory=list)


class EvidenceLog:
    def __init__(self, directory: str | os.PathLike, *, signer: evidence_keys.Signer | None = None,
                 installation: Installation | None = None):
        self.dir = Path(directory)
        self.path = self.dir / LOG_NAME
        self.head_path = self.dir / HEAD_NAME
        self._signer = signer
        self._inst = installation

    def installation(self) -> Installation:
        if self._inst is None:
            self._inst = Installation.open(self.dir, strict=False)
        return self._inst

    def signer(self) -> evidence_keys.Signer:
        """The signing key (made at first use, outside the data directory); its public key published."""
        if self._signer is None:
            self._signer = evidence_keys.load_or_create(self.installation().get("evidence_key_file"))
            evidence_keys.publish(self.dir, self._signer)
        return self._signer

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
        """Append one record (what was done and what it proved), signed; durable when this returns. An
        append interrupted before is completed first, and its repair recorded. `actor`: the
        authenticated operator, if the caller knows one (else the setting `operator`, else the OS user)."""
        signer = self.signer()  # a refused key stops here, before anything is written
        with locked(layout.path(self.dir, "evidence_lock")):
            head = self._head_file()
            if "pending" in head:
                head = self._repair(head)
            record = self._append(head, kind, data, actor=actor, outcome=outcome)
        self._anchor(record, signer)
        return record

    def _anchor(self, record: dict, signer: evidence_keys.Signer) -> None:
        """Write the new head to the second store, if one is set; a failure is logged, never fatal
        (the record is durable; `erpctl evidence verify --anchors` shows how far the store vouches)."""
        url = self.installation().get("evidence_anchor")
        if not url:
            return
        from .evidence_anchor import write_anchor  # the store code is loaded only when a store is set
        try:
            write_anchor(url, self.dir, head_anchor_of(record, signer.key_id))
        except (ControlPlaneError, OSError) as exc:
            log.warning("evidence anchor not written", extra={"anchor": url, "seq": record["seq"],
                                                                "error": getattr(exc, "detail", str(exc))})

    def _append(self, head: dict, kind: str, data: dict, *, actor: str | None, outcome: str) -> dict:
        signer = self.signer()
        os_user = _whoami()
        record = {
            "seq": head["seq"] + 1,
            "at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "kind": kind,
            "outcome": outcome,
            "actor": actor or self.installation().get("operator") or os_user,
            "os_user": os_user,
            "host": os.uname().nodename,
            "data": data,
            "prev": head["hash"],
            "key_id": signer.key_id,
        }
        record["hash"] = record_hash(record)
        record["sig"] = signer.sign(record["hash"])
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

    def readable_records(self) -> list[dict]:
        """The records that parse, in log order (a check of anchors or a report goes on past a bad line)."""
        out = []
        for line in self._log_bytes().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def verify(self) -> tuple[int, list[Problem]]:
        """Check the whole chain and its signatures; returns (records checked, problems, first problem first)."""
        report = self.check()
        return report.records, report.problems

    def trusted_keys(self) -> dict:
        """The public keys of evidence.pub in the log's directory, by key id."""
        return evidence_keys.read_public_keys(layout.path(self.dir, "evidence_public_keys"))

    def check(self, keys: dict | None = None) -> Report:
        """Check every record's hash, link, sequence number and signature, and the head. `keys`: the
        trusted public keys by id (default: evidence.pub beside the log)."""
        keys = self.trusted_keys() if keys is None else keys
        report = Report(0, [])
        prev, expected_seq = GENESIS, 1
        raw = self._log_bytes()
        crash = interrupted(self._head_file(), raw)
        if crash is not None:
            raw = raw[:crash.keep_bytes]  # a torn prefix of an append that never finished is no record
        lines = raw.splitlines()
        for lineno, line in enumerate(lines, start=1):
            try:
                rec = json.loads(line)
            except ValueError:
                report.problems.append(Problem(None, lineno, "unreadable", f"line {lineno} is not a JSON record"))
                break
            report.records += 1
            problem = _record_problem(rec, lineno, prev, expected_seq, lines, keys, report)
            if problem is not None:
                report.problems.append(problem)
                break
            prev, expected_seq = rec["hash"], expected_seq + 1
        if not report.problems:
            head_seq, head_hash = self._head()
            if head_seq != expected_seq - 1 or (head_seq and head_hash != prev):
                report.problems.append(Problem(head_seq, len(lines), "truncated",
                                               f"the head says record {head_seq} is the last, the log ends at "
                                               f"{expected_seq - 1}: newest record(s) removed or head replaced"))
        return report

    def head_anchor(self) -> dict | None:
        """The head as an anchor (seq, hash, signature, key id, time), for a backup's manifest; None when
        nothing is recorded yet."""
        seq, digest = self._head()
        if not seq:
            return None
        for line in reversed(self._log_bytes().splitlines()):
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn end of an append that never finished
            if rec.get("seq") == seq and rec.get("hash") == digest:
                return head_anchor_of(rec, rec.get("key_id"))
            break
        return {"seq": seq, "hash": digest}


def _record_problem(rec: dict, lineno: int, prev: str, expected_seq: int, lines: list[bytes], keys: dict,
                    report: Report) -> Problem | None:
    """The first thing wrong with one record (its hash, signature, link, place), else None."""
    seq = rec.get("seq")
    if rec.get("hash") != record_hash(rec):
        return Problem(seq, lineno, "altered", f"record {seq} (line {lineno}) does not match its hash")
    problem = _signature_problem(rec, lineno, keys, report)
    if problem is not None:
        return problem
    if seq == expected_seq and rec.get("prev") != prev:
        return Problem(seq - 1, lineno - 1, "altered", f"record {seq - 1} was altered or replaced: the link in "
                                                       f"record {seq} (line {lineno}) does not match it")
    if seq != expected_seq:
        later = any(_seq_of(l) == expected_seq for l in lines[lineno:])
        kind = "reordered" if later else "removed"
        detail = (f"record {seq} (line {lineno}) comes before record {expected_seq}" if later else
                  f"record(s) {expected_seq}..{seq - 1 if isinstance(seq, int) else '?'} missing "
                  f"before line {lineno}")
        return Problem(expected_seq if later else seq, lineno, kind, detail)
    return None


def _signature_problem(rec: dict, lineno: int, keys: dict, report: Report) -> Problem | None:
    seq = rec.get("seq")
    if "sig" not in rec and "key_id" not in rec:
        if report.signed:
            return Problem(seq, lineno, "unsigned", f"record {seq} (line {lineno}) is unsigned, after signed "
                                                    f"records: its signature was removed or it was inserted")
        report.unsigned_through = seq if isinstance(seq, int) else report.unsigned_through
        return None
    kid = rec.get("key_id")
    public = keys.get(kid)
    if public is None:
        return Problem(seq, lineno, "unknown-key", f"record {seq} (line {lineno}) is signed by key {kid}, which is "
                                                   "not a trusted public key (evidence.pub, or --public-key)")
    if not evidence_keys.signature_ok(public, rec.get("hash", ""), str(rec.get("sig", "")), kid):
        return Problem(seq, lineno, "altered", f"record {seq} (line {lineno}) does not match its signature: "
                                               "altered and its hash recomputed, or signed without the key")
    report.signed += 1
    if kid not in report.keys:
        report.keys.append(kid)
    return None


def head_anchor_of(record: dict, key_id: str | None) -> dict:
    """An anchor for the chain up to `record`: what an anchor store and a backup manifest keep."""
    out = {"seq": record["seq"], "hash": record["hash"], "at": record.get("at")}
    if record.get("sig"):
        out.update(sig=record["sig"], key_id=key_id)
    return out


def attest_file(log: EvidenceLog, kind: str, path: str | os.PathLike, data: dict | None = None, *,
                outcome: str = "ok", actor: str | None = None) -> dict:
    """Record that the file at `path` was published (a drill report, an artifact): the record carries
    its name, size and SHA-256, so `erpctl evidence check-file` can prove it unchanged later. Call it
    after the file is in place (written atomically). Returns the record."""
    path = Path(path)
    body = path.read_bytes()
    return log.append(kind, {**(data or {}), "file": {"name": path.name, "path": str(path.resolve()),
                                                      "bytes": len(body),
                                                      "sha256": hashlib.sha256(body).hexdigest()}},
                      outcome=outcome, actor=actor)


def attestations(records: list[dict], *, sha256: str | None = None, name: str | None = None) -> list[dict]:
    """The records that attest a file with this SHA-256 (or, with `name`, a file of that name), oldest first."""
    out = []
    for rec in records:
        f = attested_file(rec)
        if f and ((sha256 is not None and f.get("sha256") == sha256) or (name is not None and f.get("name") == name)):
            out.append(rec)
    return out


def attested_file(rec: dict) -> dict | None:
    """The file a record attests ({name, path, bytes, sha256}): `data.file` (attest_file), or a record
    whose data has `path` and `sha256` (written before attest_file existed); else None."""
    data = rec.get("data")
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("file"), dict):
        return data["file"]
    if isinstance(data.get("sha256"), str) and isinstance(data.get("path"), str):
        return {"name": Path(data["path"]).name, "path": data["path"], "sha256": data["sha256"],
                "bytes": data.get("bytes")}
    return None


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
