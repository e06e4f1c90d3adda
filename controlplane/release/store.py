"""Installed releases in the data directory, and which one is current.

    <data dir>/releases/
        <version>/            one directory per installed release, published by one rename
            release.json      what was installed and checked (see Release)
            env/              its Python environment (venv; dependencies from the control plane's)
            <wheel file>      the wheel it was installed from
        current -> <version>  the release `erpctl up` serves (a relative symlink, switched atomically)
        serving.json          what `erpctl up` serves (release, pid, restarts; supervisor.py)
        .lock                 installs and switches take it in turn
        .install-*            an install in progress (or killed): never listed, removed by the next one

A directory is a release only once its release.json is in place, and it only gets its final name
after that, so a killed install never leaves a half-release that is listed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Target
from ..errors import ReleaseError, ReleaseNotFound
from ..fsutil import fsync_dir
from .. import layout
from .wheel import VERSION_RE

log = logging.getLogger("controlplane.release")

RELEASES_DIR = layout.name("releases")
CURRENT_LINK = layout.basename("release_current")
RELEASE_FILE = layout.basename("release_info")
ENV_DIR = layout.basename("release_env")
LOCK_FILE = layout.basename("releases_lock")
TMP_PREFIX = layout.basename("release_tmp").split("<")[0]
FORMAT = 1


@dataclass(frozen=True)
class Release:
    """One installed release: its version, where it lives, and what was checked when it was installed."""

    version: str
    path: Path
    wheel_file: str
    wheel_sha256: str
    installed_at: str
    python_version: str
    schema_head: str | None
    migrations: list = field(default_factory=list, compare=False)
    erp_core_version: str = ""

    @property
    def env(self) -> Path:
        return self.path / ENV_DIR

    @property
    def python(self) -> Path:
        """The interpreter of the release's environment: run it to run the release's code."""
        return self.env / "bin" / "python"

    @property
    def wheel(self) -> Path:
        return self.path / self.wheel_file

    def as_dict(self) -> dict:
        return {"version": self.version, "path": str(self.path), "python": str(self.python),
                "wheel": {"file": self.wheel_file, "sha256": self.wheel_sha256}, "installed_at": self.installed_at,
                "python_version": self.python_version, "erp_core_version": self.erp_core_version,
                "schema_head": self.schema_head, "migrations": self.migrations}

    @classmethod
    def load(cls, path: Path) -> "Release":
        """The release in directory `path`; ReleaseError if it is not a complete one."""
        try:
            data = json.loads((path / RELEASE_FILE).read_text())
            if data.get("format") != FORMAT or data["version"] != path.name:
                raise ValueError(f"format {data.get('format')!r}, version {data.get('version')!r}")
            release = cls(version=data["version"], path=path, wheel_file=data["wheel"]["file"],
                          wheel_sha256=data["wheel"]["sha256"], installed_at=data["installed_at"],
                          python_version=data["python"]["version"], schema_head=data["schema"]["head"],
                          migrations=data["schema"]["migrations"], erp_core_version=data["erp_core"]["version"])
        except FileNotFoundError:
            raise ReleaseError(f"{path} is not a complete release: it has no {RELEASE_FILE}",
                               fix=f"Remove {path} and install the release again.") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ReleaseError(f"{path / RELEASE_FILE} is not a release file of this erpctl: {exc}",
                               fix=f"Remove {path} and install the release again.") from None
        if not os.path.exists(release.python):  # follows the link to the interpreter it was built on
            raise ReleaseError(f"release {release.version}: its environment's Python {release.python} is missing "
                               "(the interpreter it was built on was removed or moved)",
                               fix=f"Remove {path} and install {release.wheel_file} again with this erpctl.")
        return release


def releases_dir(target: Target) -> Path:
    return target.data_dir / RELEASES_DIR


@contextlib.contextmanager
def exclusive(target: Target):
    """The releases directory's lock (installs and switches), created with the directory; yields
    (directory, lock file descriptor). Child processes given the descriptor (pass_fds) hold the lock
    with us: when a killed install leaves its pip running, the next install waits for it to end."""
    root = releases_dir(target)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield root, lock.fileno()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_leftovers(root: Path) -> list[str]:
    """Remove what killed installs and switches left (call with the lock held: no one else is working)."""
    removed = []
    for p in root.iterdir() if root.is_dir() else ():
        if p.name.startswith(TMP_PREFIX) or (p.name.startswith(f".{CURRENT_LINK}.") and p.name.endswith(".tmp")):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p.name)
    if removed:
        log.info("removed leftovers of interrupted release installs", extra={"removed": removed})
        fsync_dir(root)
    return removed


def releases(target: Target) -> list[Release]:
    """The installed releases, oldest install first. Unfinished or damaged directories are not listed."""
    root = releases_dir(target)
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else ():
        if p.name.startswith(".") or p.name == CURRENT_LINK or not p.is_dir() or not VERSION_RE.match(p.name):
            continue
        try:
            out.append(Release.load(p))
        except ReleaseError as exc:
            log.warning("not a usable release", extra={"path": str(p), "reason": exc.detail})
    return sorted(out, key=lambda r: (r.installed_at, r.version))


def get(target: Target, version: str) -> Release:
    """The installed release `version`; ReleaseNotFound if there is none."""
    path = releases_dir(target) / version
    if not VERSION_RE.match(version or "") or not (path / RELEASE_FILE).exists():
        installed = ", ".join(r.version for r in releases(target)) or "none"
        raise ReleaseNotFound(f"release {version!r} is not installed (installed: {installed})",
                              fix="Install it with 'erpctl release install WHEEL'; 'erpctl release list' shows "
                                  "the installed releases.", version=version)
    return Release.load(path)


def current_version(target: Target) -> str | None:
    """What the `current` link names (no check that it is installed): cheap enough to poll."""
    try:
        return os.readlink(releases_dir(target) / CURRENT_LINK)
    except (FileNotFoundError, NotADirectoryError):
        return None


def current(target: Target) -> Release | None:
    """The current release, or None when none was made current (`erpctl up` then serves the bundled ERP)."""
    version = current_version(target)
    if version is None:
        return None
    try:
        return get(target, version)
    except ReleaseNotFound:
        raise ReleaseNotFound(f"the current release {version!r} is not installed (the 'current' link in "
                              f"{releases_dir(target)} points at nothing)",
                              fix="Choose an installed release with 'erpctl release current VERSION'.",
                              version=version) from None


def point_current_at(root: Path, version: str) -> None:
    """Switch the `current` link: a new link under a temporary name, then one rename over the old one."""
    tmp = root / f".{CURRENT_LINK}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, root / CURRENT_LINK)
    fsync_dir(root)
