"""Durable files: atomic replacement (write, fsync, rename, fsync the directory) and a
cross-process lock. Every published state file of the control plane goes through here."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def create_exclusive(path: str | os.PathLike, data: bytes, *, tmp_name: str | None = None, mode: int = 0o600) -> bool:
    """Create `path` holding `data` atomically and only if it does not exist yet (write a temporary
    file, fsync, hard-link it into place, fsync the directory). False if it already existed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(tmp_name or f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike):
    """An exclusive lock between processes and threads (flock on `lock_path`)."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
