"""Sealing processes: a large SQLite snapshot is hashed, compressed and encrypted by a few worker
processes (`python -m controlplane.backup.sealworker`), each reading page-aligned ranges of the
snapshot file itself (mapped, not sent), so the work runs on every core without contending for one
interpreter's GIL. The parent keeps what must be decided in one place: which chunks are new
(deduplication), the packs, the uploads.

The protocol, over the worker's standard input and output (little-endian):

    parent -> worker, once   enc key (32) | id key (32) | zstd level (i32) | n (u32) | n ids known (32 each)
    parent -> worker, a task offset (u64) | length (u64) | chunk size (u32) | path length (u16) | path
    worker -> parent         n (u32) | sealed bytes (u64) | CPU seconds (f64) | n chunk ids (32 each) |
                             n sealed lengths (u32 each, 0: the repository holds it) | the sealed chunks
                             or, on an error: 0xFFFFFFFF | message length (u32) | message

A worker serves tasks in order until its input closes. It dies with its parent (PR_SET_PDEATHSIG
on Linux): a killed backup leaves no process behind. Nothing here is multiprocessing's: a worker
imports only this module, whatever the parent's main module is.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

from ..errors import BackupError
from .crypto import MasterKey, Sealer, chunk_aad

INIT = struct.Struct("<32s32siI")
TASK = struct.Struct("<QQIH")
REPLY = struct.Struct("<IQd")
ERROR = 0xFFFFFFFF


# ---- the worker ------------------------------------------------------------------------------------

def _read_exactly(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def seal_range(sealer: Sealer, known, view, chunk_size: int) -> tuple[list[bytes], list[int], list[bytes]]:
    """(chunk ids, sealed lengths, sealed chunks) of the chunks of `view`: those in `known` are not sealed."""
    ids, lengths, sealed = [], [], []
    chunk_id, seal = sealer.chunk_id, sealer.seal
    for o in range(0, len(view), chunk_size):
        plain = view[o:o + chunk_size]
        cid = chunk_id(plain)
        ids.append(cid)
        if cid in known:
            lengths.append(0)
        else:
            s = seal(plain, chunk_aad(cid))
            sealed.append(s)
            lengths.append(len(s))
    return ids, lengths, sealed


def serve(inp, out) -> None:
    try:
        enc, ident, level, n = INIT.unpack(_read_exactly(inp, INIT.size))
        raw = _read_exactly(inp, 32 * n)
    except EOFError:  # the parent went away before saying anything
        return
    known = {raw[i:i + 32] for i in range(0, len(raw), 32)}
    sealer = Sealer(MasterKey(enc, ident), level)
    maps: dict[str, mmap.mmap] = {}
    while True:
        try:
            offset, length, chunk_size, path_len = TASK.unpack(_read_exactly(inp, TASK.size))
            path = _read_exactly(inp, path_len).decode()
        except EOFError:
            return
        cpu = time.thread_time()
        try:
            if path not in maps:
                maps.clear()
                with open(path, "rb") as f:  # the snapshot: private, no SQLite connection here has it open
                    maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            view = memoryview(maps[path])[offset:offset + length]
            if len(view) != length:
                raise OSError(f"the snapshot {path} ends before byte {offset + length}")
            ids, lengths, sealed = seal_range(sealer, known, view, chunk_size)
            del view
        except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it
            msg = f"{type(exc).__name__}: {exc}".encode()
            out.write(struct.pack("<II", ERROR, len(msg)) + msg)
            out.flush()
            continue
        body = b"".join(sealed)
        out.write(REPLY.pack(len(ids), len(body), time.thread_time() - cpu))
        out.write(b"".join(ids))
        out.write(struct.pack(f"<{len(lengths)}I", *lengths))
        out.write(body)
        out.flush()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ---- the parent's side -------------------------------------------------------------------------------

class Worker:
    """One sealing process; tasks are answered in the order they were sent."""

    def __init__(self, master: MasterKey, level: int, known):
        root = str(Path(__file__).resolve().parents[2])  # the same code as ours
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "controlplane.backup.sealworker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        known = list(known)
        self._send(INIT.pack(master.enc, master.ident, int(level), len(known)) + b"".join(known))

    def _send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def _died(self) -> BackupError:
        self.close(kill=True)
        err = (self.proc.stderr.read() or b"").decode(errors="replace").strip()[-2000:] if self.proc.stderr else ""
        return BackupError(f"a sealing process died ({self.proc.returncode}){': ' + err if err else ''}",
                           fix="Run the backup again; if it recurs, look at the machine's memory and the erpctl log.")

    def submit(self, path: str, offset: int, length: int, chunk_size: int) -> None:
        p = path.encode()
        self._send(TASK.pack(offset, length, chunk_size, len(p)) + p)

    def result(self) -> tuple[bytes, tuple[int, ...], bytes, float]:
        """(ids concatenated, sealed lengths, sealed chunks concatenated, CPU seconds) of the oldest task."""
        out = self.proc.stdout
        try:
            head = _read_exactly(out, 4)
            (n,) = struct.unpack("<I", head)
            if n == ERROR:
                (size,) = struct.unpack("<I", _read_exactly(out, 4))
                raise BackupError(f"sealing the snapshot failed: {_read_exactly(out, size).decode(errors='replace')}",
                                  fix="Run the backup again.")
            _, body, cpu = REPLY.unpack(head + _read_exactly(out, REPLY.size - 4))
            ids = _read_exactly(out, 32 * n)
            lengths = struct.unpack(f"<{n}I", _read_exactly(out, 4 * n))
            return ids, lengths, _read_exactly(out, body), cpu
        except EOFError:
            raise self._died() from None

    def close(self, kill: bool = False) -> None:
        if kill and self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pool:
    """A few Workers, started now (their start-up overlaps whatever the parent does next)."""

    def __init__(self, workers: int, master: MasterKey, level: int, known):
        known = list(known)
        self.workers = []
        try:
            for _ in range(workers):
                self.workers.append(Worker(master, level, known))
        except BaseException:
            self.close()
            raise

    def close(self, kill: bool = False) -> None:
        """Let the workers finish and exit (their input closes), or kill them (after a failure: one
        may be blocked writing an answer nobody reads any more)."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.close(kill=kill)


if __name__ == "__main__":
    _die_with_parent()
    serve(sys.stdin.buffer, sys.stdout.buffer)
