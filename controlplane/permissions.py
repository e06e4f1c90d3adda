"""Who may read the installation's files: its owner only.

The data directory holds the database (password hashes, the audit log, the business's data), keys and
tokens. `tighten` makes it and everything in it private to its owner (directories 0700, files 0600,
or 0700 for executables) at each start and migration, and refuses with a clear message when it cannot
(e.g. erpctl does not run as the owner). `check_private` refuses to read a secret file that its group
or others may read, naming the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import layout
from .errors import DataDirProblem

OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO


def _chmod(path: str, st: os.stat_result, mode: int) -> int:
    if stat.S_IMODE(st.st_mode) == mode:
        return 0
    try:
        os.chmod(path, mode)
    except PermissionError:
        raise DataDirProblem(
            f"cannot make {path} private to its owner (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}; "
            f"erpctl runs as uid {os.geteuid()})",
            fix=f"Run erpctl as the data directory's owner, or let its owner run 'chmod -R go-rwx {path}'.",
            path=path) from None
    return 1


def tighten(data_dir: str | os.PathLike) -> int:
    """Directories 0700, files without group or other bits (0600; 0700 for executables), from
    `data_dir` down; symbolic links are left alone and a release's environment is closed by its
    directory alone. The number of modes changed. DataDirProblem when one cannot be changed."""
    root = Path(data_dir)
    if not root.is_dir():
        return 0
    skip = layout.basename("release_env")
    changed = _chmod(str(root), root.stat(), 0o700)
    for dirpath, dirs, files in os.walk(root):
        for name in list(dirs):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                dirs.remove(name)
                continue
            changed += _chmod(p, st, 0o700)
            if name == skip:
                dirs.remove(name)
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_mode & OPEN_BITS:
                changed += _chmod(p, st, stat.S_IMODE(st.st_mode) & 0o700)
    return changed


def loose_mode(path: str | os.PathLike) -> int | None:
    """The file's mode when its group or others may read, write or run it; None when it is private."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return mode if mode & OPEN_BITS else None


def check_private(path: str | os.PathLike) -> None:
    """Refuse a secret file its group or others may read or write."""
    if (mode := loose_mode(path)) is not None:
        raise DataDirProblem(f"{path} holds a secret but its group or others may read it (mode {mode:04o})",
                             fix=f"chmod 600 {path}", path=str(path))
