"""Content-defined chunking of files that are not SQLite databases (pg_dump's custom format).

A boundary falls where a rolling hash of the last 64 bytes has its low bits zero (between a minimum
and a maximum size, controlplane.backup.chunker's CDC_* sizes), so an insertion shifts only the
chunks around it. The rolling hash is a windowed sum of a gear table derived from the repository's
id key (boundaries leak nothing about the data); numpy computes it in bulk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .chunker import CDC_AVG_BITS, CDC_MAX, CDC_MIN

READ_BLOCK = 8 << 20
CDC_WINDOW = 64


def gear_table(seed: bytes) -> np.ndarray:
    """256 pseudo-random 32-bit values from a 32-byte seed (the repository's, so boundaries are keyed)."""
    raw = b"".join(hashlib.blake2b(seed + i.to_bytes(2, "big"), digest_size=64).digest() for i in range(16))
    return np.frombuffer(raw, dtype=">u4").astype(np.uint64)


def _candidates(buf: bytes, table: np.ndarray, mask: int) -> np.ndarray:
    """Positions p (cut after byte p-1, i.e. chunk ends at p) where the window hash matches."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    cs = np.cumsum(table[arr], dtype=np.uint64)
    win = cs.copy()
    win[CDC_WINDOW:] -= cs[:-CDC_WINDOW]
    hits = np.flatnonzero((win & np.uint64(mask)) == 0)
    return hits + 1  # a hash at byte i closes a chunk ending after i


def cdc_chunks(path: Path, seed: bytes, *, min_size: int = CDC_MIN, avg_bits: int = CDC_AVG_BITS,
               max_size: int = CDC_MAX) -> Iterator[bytes]:
    table = gear_table(seed)
    mask = (1 << avg_bits) - 1
    with open(path, "rb") as f:
        buf = b""
        eof = False
        while not eof or buf:
            if not eof and len(buf) < READ_BLOCK:
                more = f.read(READ_BLOCK)
                eof = not more
                buf += more
                if not eof:
                    continue
            cands = _candidates(buf, table, mask) if buf else np.empty(0, dtype=np.int64)
            start, i = 0, 0
            n = len(buf)
            while True:
                if n - start <= (0 if eof else max_size):
                    break
                lo, hi = start + min_size, start + max_size
                i = int(np.searchsorted(cands, lo, side="left"))
                cut = int(cands[i]) if i < len(cands) and cands[i] <= hi else hi
                if cut >= n:
                    if not eof:
                        break
                    cut = n
                yield buf[start:cut]
                start = cut
            buf = buf[start:]
            if eof and not buf:
                break
