"""Damage marks: the chunks a check found damaged or missing, so that the next backup stores them
again from the live database instead of trusting the index.

A mark names a chunk *and the pack that held it*: the index then ignores that one location of the
chunk (index.py), so the chunk counts as absent, a backup that meets it again stores it in a new
pack, and every backup that needs it reads that copy (chunks are content-addressed: same id).
Packs are named by the hash of their bytes and never rewritten, so a mark can never hide a good
copy.

    damaged/<sha256>    sealed (aad b"damaged") JSON {"version": 1, "created_at": ...,
                        "chunks": [[chunk id hex, pack name, reason], ...]}

Each check that finds damage writes a new file (never read-modify-write), so checks and backups
running at the same time never lose a mark. Prune, under its exclusive lock and once it has written
an index without the damaged locations, keeps only the marks of chunks a kept backup still lacks
(prune.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct

import zstandard

from ..crypto import AuthenticationFailed, Sealer
from ..store import NotFound
from .records import now_iso

log = logging.getLogger("controlplane.backup")

PREFIX = "damaged/"
AAD = b"damaged"
VERSION = 1

# the reasons of a check's problems that say nothing of the chunk's bytes: nothing to mark
_NOT_DAMAGE = ("the chunk is in no pack of the index",)


def markable(problems: list[dict]) -> list[tuple[str, str, str]]:
    """(chunk, pack, reason) of every problem that names a chunk in a pack (damaged or missing)."""
    out = []
    for p in problems:
        chunk, pack, reason = p.get("chunk") or "", p.get("pack") or "", p.get("reason") or ""
        if chunk and pack and reason not in _NOT_DAMAGE and not p.get("marked"):
            out.append((chunk, pack, reason))
    return sorted(set(out))


def encode(marks: list[tuple[str, str, str]]) -> bytes:
    return json.dumps({"version": VERSION, "created_at": now_iso(), "chunks": [list(m) for m in marks]},
                      separators=(",", ":")).encode()


def decode(data: bytes) -> list[tuple[str, str, str]]:
    d = json.loads(data)
    if not isinstance(d, dict) or int(d.get("version", 0)) > VERSION:
        raise ValueError(f"damage marks of version {d.get('version') if isinstance(d, dict) else '?'}: "
                         "a newer erpctl wrote them")
    return [(str(c), str(p), str(r)) for c, p, r in d.get("chunks", [])]


class DamageMarks:
    """The marks of one repository: (chunk id, pack) -> why, as last loaded."""

    def __init__(self, store, sealer: Sealer):
        self.store = store
        self.sealer = sealer
        self.marks: dict[tuple[bytes, str], str] = {}
        self.by_chunk: dict[bytes, list[str]] = {}
        self.files: list[str] = []

    def _add(self, chunk: str, pack: str, reason: str) -> None:
        cid = bytes.fromhex(chunk)
        if (cid, pack) not in self.marks:
            self.by_chunk.setdefault(cid, []).append(pack)
        self.marks[(cid, pack)] = reason

    def load(self) -> None:
        self.marks, self.by_chunk, self.files = {}, {}, []
        for obj in self.store.list(PREFIX):
            try:
                entries = decode(self.sealer.open(self.store.get(obj.key), AAD))
            except NotFound:
                continue
            except (AuthenticationFailed, ValueError, KeyError, TypeError, struct.error,
                    zstandard.ZstdError) as exc:
                log.warning("skipping unreadable damage marks", extra={"marks": obj.key, "error": str(exc)})
                continue
            self.files.append(obj.key)
            for chunk, pack, reason in entries:
                self._add(chunk, pack, reason)

    def __contains__(self, key: tuple[bytes, str]) -> bool:
        return key in self.marks

    def packs_of(self, cid: bytes) -> list[str]:
        """The packs where this chunk was found damaged (or missing)."""
        return sorted(self.by_chunk.get(cid, ()))

    def write(self, marks: list[tuple[str, str, str]]) -> int:
        """Persist the marks not yet recorded; how many were new."""
        new = [m for m in marks if (bytes.fromhex(m[0]), m[1]) not in self.marks]
        if not new:
            return 0
        sealed = self.sealer.seal(encode(new), AAD)
        key = PREFIX + hashlib.sha256(sealed).hexdigest()
        self.store.put(key, sealed)
        self.files.append(key)
        for chunk, pack, reason in new:
            self._add(chunk, pack, reason)
        log.info("damaged chunks marked: the next backup stores them again", extra={"chunks": len(new)})
        return len(new)

    def rewrite(self, keep: list[tuple[str, str, str]]) -> None:
        """Replace every mark file by one holding `keep` (none when empty): written first, then the
        old files deleted, so a run killed in between leaves marks that are still right. Only prune
        does it, under its exclusive lock, once its new index no longer names the damaged locations."""
        old = list(self.files)
        self.marks, self.by_chunk, self.files = {}, {}, []
        self.write(keep)
        for key in old:
            if key not in self.files:
                self.store.delete(key)
