"""Sealing processes: a large SQLite snapshot is hashed, compressed and encrypted by a few worker
processes (`python -m controlplane.backup.sealworker`), each reading page-aligned ranges of the
snapshot file itself (mapped, not sent), so the work runs on every core without contending for one
interpreter's GIL. The parent keeps what must be decided in one place: which chunks are new
(deduplication), the packs, the uploads.

While the parent copies the live database into the snapshot (SQLite's backup API: one core, for
about a second per GB), the workers have nothing to do yet: each reads the live file's pages of the
ranges it will be given (plain reads in a process of its own, where they disturb no SQLite lock of
the parent's) and seals them, keyed by chunk id, at the lowest CPU priority (only cycles nothing
else wants: it must not slow the copy down). A snapshot page with the same bytes has the same
id (a keyed hash of the bytes), so its sealed form is taken from there; a page that changed in the
meantime, or was read while a checkpoint wrote it, has another id and is sealed then. What is
stored is always exactly the snapshot's bytes. This "preseal" stops when the first range comes.

The protocol, over the worker's standard input and output (little-endian):

    parent -> worker, once   enc key (32) | id key (32) | zstd level (i32) | n (u32) | dictionary length
                             (u32, 0: none) | n ids known (32 each) | the repository's dictionary
    parent -> worker, then   kind (u8) | a (u64) | b (u64) | size (u32) | path length (u16) | path
                             kind SEAL: the chunks of path[a:a + b], chunks of `size` bytes (answered)
                             kind PRESEAL: seal the live database at path meanwhile, ranges a, a + b,
                             a + 2b, ... of SEAL_RANGE bytes (rounded to chunks of at least `size`)
                             kind OPEN: a entries (OPEN_ENTRY each), then a pack of b bytes: open its
                             chunks (see open_pack), writing them into the file at path (none: check only)
    worker -> parent         n (u32) | sealed bytes (u64) | CPU seconds (f64) | n chunk ids (32 each) |
                             n sealed lengths (u32 each, 0: the repository holds it) | the sealed chunks
                             OPEN: n problems (u32) | bytes written (u64) | CPU seconds (f64) | n times
                             chunk id (32) | reason length (u16) | reason
                             or, on an error: 0xFFFFFFFF | message length (u32) | message

The same processes open packs for a restore or an L1 check of a large repository: each
authenticates, decompresses and hashes the chunks of the packs it is handed and writes them at
their places in the restored file itself.

A worker serves tasks in order until its input closes. It dies with its parent (PR_SET_PDEATHSIG
on Linux): a killed backup leaves no process behind. Nothing here is multiprocessing's: a worker
imports only this module, whatever the parent's main module is.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import zstandard

from ..errors import BackupError
from .crypto import AuthenticationFailed, MasterKey, Sealer, chunk_aad

INIT = struct.Struct("<32s32siII")
TASK = struct.Struct("<BQQIH")
SEAL, PRESEAL, OPEN = 1, 2, 3
# a chunk to open: id, offset and length in the pack, raw length, offset in the file (-1: none)
OPEN_ENTRY = struct.Struct("<32sQIIq")
IOV_MAX = 1024  # buffers per writev (Linux's limit)
SEAL_RANGE = 4 << 20  # the parent's ranges (repository.tuning.SEAL_RANGE)
PRESEAL_MAX_BYTES = 128 << 20  # sealed pages a worker keeps
REPLY = struct.Struct("<IQd")
ERROR = 0xFFFFFFFF


# ---- the worker ------------------------------------------------------------------------------------

def _read_exactly(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def seal_range(sealer: Sealer, known, view, chunk_size: int, presealed: dict | None = None
               ) -> tuple[list[bytes], list[int], list[bytes]]:
    """(chunk ids, sealed lengths, sealed chunks) of the chunks of `view`: those in `known` are not
    sealed; those in `presealed` (chunk id -> the same bytes sealed before) are taken from there."""
    pieces = [view[o:o + chunk_size] for o in range(0, len(view), chunk_size)]
    chunk_id = sealer.chunk_id
    ids = [chunk_id(p) for p in pieces]
    pre = (presealed or {}).pop
    done: dict[int, bytes] = {}
    fresh = []
    for i, cid in enumerate(ids):
        if cid not in known:
            s = pre(cid, None)
            if s is None:
                fresh.append(i)
            else:
                done[i] = s
    done.update(zip(fresh, sealer.seal_many([pieces[i] for i in fresh], [chunk_aad(ids[i]) for i in fresh])))
    lengths, sealed = [], []
    for i in range(len(ids)):
        s = done.get(i)
        lengths.append(0 if s is None else len(s))
        if s is not None:
            sealed.append(s)
    return ids, lengths, sealed


def chunk_problem(sealer: Sealer, cid: bytes, sealed: bytes, length: int, raw_length: int) -> bytes | str:
    """The plaintext of a stored chunk, or why it is not good."""
    if len(sealed) != length:
        return f"truncated: {len(sealed)} of {length} bytes"
    try:
        plain = sealer.open(sealed, chunk_aad(cid), raw_length)
    except AuthenticationFailed:
        return "authentication failed (the stored bytes were altered or damaged)"
    except zstandard.ZstdError as exc:
        return f"does not decompress: {exc}"
    if len(plain) != raw_length:
        return f"wrong length: {len(plain)} bytes, the index says {raw_length}"
    if sealer.chunk_id(plain) != cid:
        return "content does not hash to the chunk id"
    return plain


def write_runs(fd: int, placed: list[tuple[int, bytes]]) -> int:
    """Write each plaintext at its offset, chunks that follow each other in one system call (one
    4 KiB write at a time costs more than opening the chunk). Returns the bytes written."""
    placed.sort(key=lambda p: p[0])
    written, i = 0, 0
    while i < len(placed):
        start, parts = placed[i][0], [placed[i][1]]
        end = start + len(parts[0])
        i += 1
        while i < len(placed) and placed[i][0] == end and len(parts) < IOV_MAX:
            parts.append(placed[i][1])
            end += len(placed[i][1])
            i += 1
        while start < end:  # a short write goes on where it stopped
            n = os.pwritev(fd, parts, start)
            start, written = start + n, written + n
            while parts and n >= len(parts[0]):
                n -= len(parts[0])
                parts.pop(0)
            if n:
                parts[0] = memoryview(parts[0])[n:]
    return written


def open_pack(sealer: Sealer, pack, entries, fd: int | None) -> tuple[int, list[tuple[bytes, str]]]:
    """Open the chunks `entries` (OPEN_ENTRY tuples) of the pack's bytes: each authenticated,
    decompressed and hashed, and written at its file offset when fd is given. Returns (bytes
    written, [(chunk id, why it is not good), ...])."""
    view = memoryview(pack)
    opened: dict[bytes, bytes | str] = {}
    placed, problems = [], []
    for cid, offset, length, raw_length, at in entries:
        plain = opened.get(cid)
        if plain is None:
            plain = opened[cid] = chunk_problem(sealer, cid, view[offset:offset + length], length, raw_length)
            if isinstance(plain, str):
                problems.append((cid, plain))
        if at >= 0 and not isinstance(plain, str):
            placed.append((at, plain))
    return (write_runs(fd, placed) if fd is not None else 0), problems


class _Preseal:
    """Sealing the live database's pages of this worker's ranges, in a thread, until stopped."""

    def __init__(self, sealer: Sealer, known, path: str, first: int, stride: int, min_chunk: int):
        self.cache: dict[bytes, bytes] = {}
        self.cpu = 0.0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(sealer.copy(), known, path, first, stride,
                                                               min_chunk), daemon=True)
        self.thread.start()

    def _run(self, sealer: Sealer, known, path: str, first: int, stride: int, min_chunk: int) -> None:
        cpu = time.thread_time()
        with contextlib.suppress(OSError, AttributeError):  # idle CPU only: the copy comes first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                header = os.pread(fd, 100, 0)
                page = int.from_bytes(header[16:18], "big") if header.startswith(b"SQLite format 3\x00") else 0
                if not page:
                    return
                page = 65536 if page == 1 else page
                size = page * max(1, -(-min_chunk // page))
                step = max(size, SEAL_RANGE // size * size)
                kept, k = 0, first
                while not self.halt.is_set() and kept < PRESEAL_MAX_BYTES:
                    data = os.pread(fd, step, k * step)
                    if len(data) < size:
                        break
                    view = memoryview(data)
                    for o in range(0, len(data) - size + 1, size):
                        if self.halt.is_set():
                            break
                        plain = view[o:o + size]
                        cid = sealer.chunk_id(plain)
                        if cid not in known and cid not in self.cache:
                            self.cache[cid] = sealed = sealer.seal(plain, chunk_aad(cid))
                            kept += len(sealed)
                    k += stride
            finally:
                os.close(fd)
        except OSError:
            pass  # an optimisation only: what is missing is sealed when its range comes
        finally:
            self.cpu = time.thread_time() - cpu

    def stop(self) -> tuple[dict[bytes, bytes], float]:
        self.halt.set()
        self.thread.join()
        return self.cache, self.cpu


def serve(inp, out) -> None:
    try:
        enc, ident, level, n, dict_length = INIT.unpack(_read_exactly(inp, INIT.size))
        raw = _read_exactly(inp, 32 * n)
        dictionary = _read_exactly(inp, dict_length) if dict_length else None
    except EOFError:  # the parent went away before saying anything
        return
    known = {raw[i:i + 32] for i in range(0, len(raw), 32)}
    sealer = Sealer(MasterKey(enc, ident), level, dictionary)
    maps: dict[str, mmap.mmap] = {}
    files: dict[str, int] = {}  # OPEN: the restored files written, open for writing
    preseal, presealed, extra_cpu = None, {}, 0.0
    while True:
        try:
            kind, offset, length, chunk_size, path_len = TASK.unpack(_read_exactly(inp, TASK.size))
            path = _read_exactly(inp, path_len).decode()
        except EOFError:
            return
        if kind == PRESEAL:
            if preseal is None:
                preseal = _Preseal(sealer, known, path, offset, length, chunk_size)
            continue
        if kind == OPEN:
            try:
                raw_entries = _read_exactly(inp, OPEN_ENTRY.size * offset)
                pack = _read_exactly(inp, length)
            except EOFError:
                return
            _serve_open(out, sealer, path, list(OPEN_ENTRY.iter_unpack(raw_entries)), pack, files)
            continue
        if preseal is not None:
            presealed, extra_cpu = preseal.stop()
            preseal = None
        cpu = time.thread_time()
        try:
            if path not in maps:
                maps.clear()
                with open(path, "rb") as f:  # the snapshot: private, no SQLite connection here has it open
                    maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            view = memoryview(maps[path])[offset:offset + length]
            if len(view) != length:
                raise OSError(f"the snapshot {path} ends before byte {offset + length}")
            ids, lengths, sealed = seal_range(sealer, known, view, chunk_size, presealed)
            del view
        except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it
            _error(out, exc)
            continue
        body = b"".join(sealed)
        out.write(REPLY.pack(len(ids), len(body), time.thread_time() - cpu + extra_cpu))
        extra_cpu = 0.0
        out.write(b"".join(ids))
        out.write(struct.pack(f"<{len(lengths)}I", *lengths))
        out.write(body)
        out.flush()


def _error(out, exc: Exception) -> None:
    msg = f"{type(exc).__name__}: {exc}".encode()
    out.write(struct.pack("<II", ERROR, len(msg)) + msg)
    out.flush()


def _serve_open(out, sealer: Sealer, path: str, entries, pack: bytes, files: dict[str, int]) -> None:
    cpu = time.thread_time()
    try:
        fd = None
        if path:
            if path not in files:
                files[path] = os.open(path, os.O_WRONLY)
            fd = files[path]
        written, problems = open_pack(sealer, pack, entries, fd)
    except Exception as exc:  # noqa: BLE001 - told to the parent, which raises it (a full disk: OSError)
        _error(out, exc)
        return
    out.write(REPLY.pack(len(problems), written, time.thread_time() - cpu))
    for cid, reason in problems:
        text = reason.encode()[:65535]
        out.write(cid + struct.pack("<H", len(text)) + text)
    out.flush()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ---- the parent's side -------------------------------------------------------------------------------

class Worker:
    """One sealing process; tasks are answered in the order they were sent."""

    def __init__(self, master: MasterKey, level: int, known, dictionary: bytes | None = None):
        root = str(Path(__file__).resolve().parents[2])  # the same code as ours
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "controlplane.backup.sealworker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        known = list(known)
        dictionary = dictionary or b""
        init = (INIT.pack(master.enc, master.ident, int(level), len(known), len(dictionary)) + b"".join(known)
                + dictionary)
        # written by a thread: the worker reads it only once started, and the ids of a large repository
        # fill the pipe; meanwhile this process goes on (the capture). The first task waits for it.
        self._init_failed = False
        self._init: threading.Thread | None = threading.Thread(target=self._write_init, args=(init,), daemon=True)
        self._init.start()

    def _write_init(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._init_failed = True

    def _wait_init(self) -> None:
        if self._init is not None:
            self._init.join()
            self._init = None
            if self._init_failed:
                raise self._died()

    def _send(self, data: bytes) -> None:
        self._wait_init()
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
        self._send(TASK.pack(SEAL, offset, length, chunk_size, len(p)) + p)

    def preseal(self, live_path: str, first: int, stride: int, min_chunk: int) -> None:
        p = live_path.encode()
        self._send(TASK.pack(PRESEAL, first, stride, min_chunk, len(p)) + p)

    def submit_open(self, dest: str, entries: list[tuple], pack: bytes) -> None:
        """Open the chunks `entries` (OPEN_ENTRY tuples) of a pack, writing them into dest ("": none)."""
        p = dest.encode()
        self._send(TASK.pack(OPEN, len(entries), len(pack), 0, len(p)) + p
                   + b"".join(OPEN_ENTRY.pack(*e) for e in entries))
        self._send(pack)

    def _head(self, failed: str) -> tuple[int, int, float]:
        """The oldest answer's (n, bytes, CPU seconds); a failure in the worker is raised, named by `failed`."""
        out = self.proc.stdout
        try:
            head = _read_exactly(out, 4)
            (n,) = struct.unpack("<I", head)
            if n == ERROR:
                (size,) = struct.unpack("<I", _read_exactly(out, 4))
                msg = _read_exactly(out, size).decode(errors="replace")
                if "No space left" in msg or "Disk quota" in msg:
                    raise OSError(errno.ENOSPC, msg)
                raise BackupError(f"{failed} failed: {msg}", fix="Run it again.")
            return REPLY.unpack(head + _read_exactly(out, REPLY.size - 4))
        except EOFError:
            raise self._died() from None

    def result(self) -> tuple[bytes, tuple[int, ...], bytes, float]:
        """(ids concatenated, sealed lengths, sealed chunks concatenated, CPU seconds) of the oldest task."""
        n, body, cpu = self._head("sealing the snapshot")
        out = self.proc.stdout
        try:
            ids = _read_exactly(out, 32 * n)
            lengths = struct.unpack(f"<{n}I", _read_exactly(out, 4 * n))
            return ids, lengths, _read_exactly(out, body), cpu
        except EOFError:
            raise self._died() from None

    def open_result(self) -> tuple[int, list[tuple[bytes, str]], float]:
        """(bytes written, [(chunk id, why it is not good)], CPU seconds) of the oldest OPEN task."""
        n, written, cpu = self._head("opening a pack")
        out, problems = self.proc.stdout, []
        try:
            for _ in range(n):
                cid = _read_exactly(out, 32)
                (size,) = struct.unpack("<H", _read_exactly(out, 2))
                problems.append((cid, _read_exactly(out, size).decode(errors="replace")))
        except EOFError:
            raise self._died() from None
        return written, problems, cpu

    def close(self, kill: bool = False) -> None:
        if kill and self.proc.poll() is None:
            self.proc.kill()
        if self._init is not None:  # killed, its write fails at once; alive, the worker reads it
            self._init.join()
            self._init = None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pool:
    """A few Workers, started now (their start-up overlaps whatever the parent does next)."""

    def __init__(self, workers: int, master: MasterKey, level: int, known, dictionary: bytes | None = None):
        known = list(known)
        self.workers = []
        try:
            for _ in range(workers):
                self.workers.append(Worker(master, level, known, dictionary))
        except BaseException:
            self.close()
            raise

    def preseal(self, live_path, min_chunk: int) -> None:
        """Each worker seals the live database's pages of the ranges it will get (see the module's doc)."""
        for i, w in enumerate(self.workers):
            w.preseal(str(live_path), i, len(self.workers), min_chunk)

    def finish(self) -> None:
        """No more tasks: the workers exit meanwhile (close() then finds them gone)."""
        for w in self.workers:
            with contextlib.suppress(OSError, BackupError):
                w._wait_init()
                w.proc.stdin.close()

    def close(self, kill: bool = False) -> None:
        """Let the workers finish and exit (their input closes), or kill them (after a failure: one
        may be blocked writing an answer nobody reads any more)."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.close(kill=kill)


if __name__ == "__main__":
    _die_with_parent()
    serve(sys.stdin.buffer, sys.stdout.buffer)
