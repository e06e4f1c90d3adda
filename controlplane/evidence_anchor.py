"""Anchors of the evidence log's head, kept where the data directory's owner alone cannot rewrite them.

An anchor is the head at some moment: a record's sequence number and hash (and its signature and
key id). Because every record's hash covers the one before, an anchor vouches for the whole log up to
its record. Two places hold anchors:

- every backup's manifest (`details.evidence_head`, written by the backup code when it creates the
  backup: controlplane/backup/repository/create.py), sealed with the repository's key;
- the optional second store (setting `evidence_anchor`: a directory or s3://bucket/prefix, the S3
  settings of the backups): after every append, a new object
  `evidence-head/<installation id>/<seq, 12 digits>-<hash>.json`. Objects are only ever created
  (create-if-absent), never overwritten; give the store a retention lock or object lock (S3) or a
  directory the data directory's owner cannot delete from, and it is append-only for them too.

`check` compares the log with the anchors: a record an anchor names that is missing (a removed
tail, a removed log) or differs (a chain rewritten, even with every hash recomputed) is a problem
naming the anchor. The store's object names carry seq and hash, so a listing checks every anchor;
only the newest is read, for its signature.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import evidence_keys
from .evidence import Problem
from .installation import installation_id

PREFIX = "evidence-head/"
NAME = re.compile(r"(\d{12})-([0-9a-f]{64})\.json$")


@dataclass(frozen=True)
class Anchor:
    source: str  # "backup 1a2b3c4d (file:///..., 2026-...)" or "anchor store s3://.../evidence-head/..."
    seq: int
    hash: str
    sig: str | None = None
    key_id: str | None = None
    at: str | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def object_key(data_dir: str | os.PathLike, seq: int, digest: str) -> str:
    return f"{PREFIX}{installation_id(data_dir)}/{seq:012d}-{digest}.json"


_STORES: dict = {}


def _store(url: str, data_dir: str | os.PathLike):
    """The store at `url`, opened once per process (an S3 client is slow to make; `erpctl up` appends often)."""
    from .backup.store import open_store  # the store code is loaded only when a store is used

    key = (url, str(data_dir))
    if key not in _STORES:
        _STORES[key] = open_store(url, Path(data_dir))
    return _STORES[key]


def write_anchor(url: str, data_dir: str | os.PathLike, anchor: dict) -> bool:
    """Create the anchor object for `anchor` (seq, hash, ...) in the store at `url`; False if it was there."""
    store = _store(url, data_dir)
    body = json.dumps(anchor, sort_keys=True).encode()
    return store.put_new(object_key(data_dir, anchor["seq"], anchor["hash"]), body)


def store_anchors(url: str, data_dir: str | os.PathLike) -> list[Anchor]:
    """Every anchor of this installation in the store at `url` (the newest read in full, for its signature)."""
    from .backup.store import NotFound

    store = _store(url, data_dir)
    where = url.rstrip("/")
    found = sorted((int(m[1]), m[2], obj.key) for obj in store.list(f"{PREFIX}{installation_id(data_dir)}/")
                   if (m := NAME.search(obj.key)))
    out = [Anchor(f"anchor store {where}/{key}", seq, digest) for seq, digest, key in found]
    if out:
        try:
            body = json.loads(store.get(found[-1][2]))
        except (NotFound, ValueError):
            body = {}
        newest = out[-1]
        out[-1] = Anchor(newest.source, newest.seq, newest.hash, body.get("sig"), body.get("key_id"), body.get("at"))
    return out


def manifest_anchors(repo) -> list[Anchor]:
    """The evidence head each backup of the repository recorded when it was made."""
    out = []
    for m in repo.list_manifests():
        head = (m.details or {}).get("evidence_head")
        if isinstance(head, dict) and isinstance(head.get("seq"), int) and isinstance(head.get("hash"), str):
            out.append(Anchor(f"backup {m.short_id} ({repo.url}, made {m.created_at})", head["seq"], head["hash"],
                              head.get("sig"), head.get("key_id"), head.get("at")))
    return out


def check(records: list[dict], anchors: list[Anchor], keys: dict) -> list[Problem]:
    """The anchors that disagree with the log's records, the lowest record first."""
    by_seq = {r.get("seq"): (line, r) for line, r in enumerate(records, start=1)}
    last = max((s for s in by_seq if isinstance(s, int)), default=0)
    problems = []
    for a in sorted(anchors, key=lambda a: a.seq):
        line, rec = by_seq.get(a.seq, (0, None))
        if rec is None:
            what = "the log is empty or deleted" if not last else f"the log ends at record {last}: newest records removed"
            problems.append(Problem(a.seq, line, "anchor", f"{a.source} vouches for record {a.seq} "
                                                           f"(hash {a.hash[:16]}...), but {what}"))
        elif rec.get("hash") != a.hash:
            problems.append(Problem(a.seq, line, "anchor", f"{a.source} says record {a.seq} has hash "
                                                           f"{a.hash[:16]}..., the log's has {str(rec.get('hash'))[:16]}"
                                                           "...: the log was rewritten after it was anchored"))
        elif a.sig and a.key_id in keys and not evidence_keys.signature_ok(keys[a.key_id], a.hash, a.sig):
            problems.append(Problem(a.seq, line, "anchor", f"{a.source} carries a signature that does not "
                                                           "match: the anchor itself was forged"))
    return problems


def verify(log, keys: dict | None = None, anchors: list[Anchor] | None = None, sources: list[str] | None = None) -> dict:
    """Everything `erpctl evidence verify` reports: the chain, the signatures and, when `anchors` is
    given (the --anchors check), every anchor against the log. `keys`: trusted public keys (None: the
    log's evidence.pub)."""
    report = log.check(keys)
    problems = list(report.problems)
    crash = log.interrupted()
    checked = None
    if anchors is not None:
        disagree = check(log.readable_records(), anchors, log.trusted_keys() if keys is None else keys)
        problems += disagree
        agree = [a.seq for a in anchors if not any(p.seq == a.seq for p in disagree)]
        checked = {"count": len(anchors), "sources": sources or [], "disagree": [p.as_dict() for p in disagree],
                   "vouched_through": max(agree, default=0)}
    first = problems[0].as_dict() if problems else None
    intact = report.records  # the records before the first bad line are intact
    if first is not None and first["kind"] == "anchor":
        intact = min(report.records, max(0, first["seq"] - 1))
    elif first is not None and first["kind"] != "truncated":
        intact = max(0, first["line"] - 1)
    return {"ok": not problems, "path": str(log.path), "records": report.records, "intact_through": intact,
            "first_problem": first, "problems": [p.as_dict() for p in problems],
            "interrupted": crash.as_dict() if crash else None, "signed": report.signed,
            "unsigned_through": report.unsigned_through, "keys": report.keys, "anchors": checked}
