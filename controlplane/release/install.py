"""Installing a release: a wheel of this project into its own environment under the data directory.

The environment is built in a temporary directory beside its final place, checked (its Python
imports erp_core from inside it, of the wheel's version), described in release.json, flushed to disk,
and only then renamed to <data dir>/releases/<version>. Offline: `python -m venv
--system-site-packages` of the control plane's own interpreter (the dependencies are the control
plane's) and `pip install --no-index --no-deps` of the wheel.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shutil
import site
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..config import Target
from ..errors import BadWheel, ReleaseConflict, ReleaseError
from ..evidence import EvidenceLog
from ..fsutil import atomic_write_text, fsync_dir
from ..installation import Installation
from . import runner
from .store import ENV_DIR, FORMAT, RELEASE_FILE, TMP_PREFIX, Release, exclusive, remove_leftovers
from .wheel import WheelInfo, inspect_wheel, sha256_of

log = logging.getLogger("controlplane.release")

STEP_TIMEOUT = 300
SITE_PTH = "_erpctl_controlplane_site.pth"


@dataclass(frozen=True)
class Installed:
    release: Release
    created: bool  # False: the same wheel was installed already, nothing was done

    def as_dict(self) -> dict:
        return {"installed": self.created, **self.release.as_dict()}


def install(target: Target, wheel_path: str | os.PathLike, *, actor: str | None = None,
            allow_unsigned: bool = False) -> Installed:
    """Install the wheel as release <version>. Its signature (<wheel>.sig) is checked against the
    installation's trusted keys first, reading the wheel as bytes only: an unsigned, untrusted or altered
    wheel is refused (ReleaseUntrusted) unless `allow_unsigned` (recorded in the evidence log). The same
    wheel again is a no-op (created=False); another wheel of an installed version is refused
    (ReleaseConflict); a file that is not a sound wheel of this project is refused (BadWheel) before
    anything is written."""
    trust = _check_signature(target, wheel_path, allow_unsigned)
    info = inspect_wheel(wheel_path)  # reads the zip's METADATA; imports nothing
    if trust.sha256 is not None and info.sha256 != trust.sha256:
        raise BadWheel(f"{info.filename} changed after its signature was checked",
                       fix="Install it again once nothing writes to it.", path=str(info.path))
    config.ensure_data_dir(target)
    if not trust.signed:
        log.warning("installing an unsigned or untrusted wheel (--allow-unsigned)",
                    extra={"wheel": info.filename, "problem": trust.problem})
        EvidenceLog(target.data_dir).append("release_unsigned_allowed", {
            "wheel": info.filename, "sha256": info.sha256, "problem": trust.problem}, actor=actor)
    t0 = time.monotonic()
    with exclusive(target) as (root, lock_fd):
        remove_leftovers(root)
        final = root / info.version
        if final.exists() or final.is_symlink():
            return Installed(_same_or_conflict(final, info), created=False)
        tmp = root / f"{TMP_PREFIX}{info.version}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o700)
        try:
            _build(tmp, final, info, lock_fd)
            os.rename(tmp, final)
            fsync_dir(root)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise ReleaseError(f"cannot write release {info.version} in {root}: {exc.strerror or exc}",
                                   fix="Free space or fix the permissions of the data directory, then install "
                                       "again (nothing was kept).") from exc
            raise
    release = Release.load(final)
    seconds = round(time.monotonic() - t0, 2)
    log.info("installed release", extra={"version": release.version, "path": str(final), "seconds": seconds})
    EvidenceLog(target.data_dir).append("release_install", {
        "version": release.version, "wheel": release.wheel_file, "sha256": release.wheel_sha256,
        "path": str(final), "schema_head": release.schema_head, "python": release.python_version,
        "signature": trust.as_dict(),
        "migrations": [{"revision": m["revision"], "stage": m["stage"], "sha256": m["sha256"]}
                       for m in release.migrations]}, actor=actor)
    return Installed(release, created=True)


def _check_signature(target: Target, wheel_path, allow_unsigned: bool):
    from . import signing  # cryptography is loaded only by the commands that install

    if not Path(wheel_path).is_file():
        inspect_wheel(wheel_path)  # says what is wrong with the path
    keys = Installation.of(target).get("release_trusted_keys")
    return signing.verify(wheel_path, keys, allow_unsigned=allow_unsigned)


def _same_or_conflict(final: Path, info: WheelInfo) -> Release:
    try:
        existing = Release.load(final)
    except ReleaseError as exc:
        raise ReleaseError(f"{final} exists but is not a usable release: {exc.detail}",
                           fix=f"Remove {final} (no release of that version is usable), then install again.") from None
    if existing.wheel_sha256 != info.sha256:
        raise ReleaseConflict(
            f"release {info.version} is already installed from another wheel ({existing.wheel_file}, sha256 "
            f"{existing.wheel_sha256[:12]}...; this one is {info.sha256[:12]}...)",
            fix="A version names one build: build the new code under a new version. If the installed one is "
                "wrong, make another release current and remove its directory first.",
            version=info.version, installed_sha256=existing.wheel_sha256, wheel_sha256=info.sha256)
    log.info("release already installed from the same wheel", extra={"version": info.version})
    return existing


def _run(args: list, what: str, *, cwd: Path, lock_fd: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one step; it holds the releases lock with us (see store.exclusive)."""
    try:
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=STEP_TIMEOUT,
                              cwd=cwd, env=env or runner.child_env(), stdin=subprocess.DEVNULL,
                              pass_fds=(lock_fd,))
    except subprocess.TimeoutExpired:
        raise ReleaseError(f"{what} took longer than {STEP_TIMEOUT} s", fix="Check the host's load and disk, "
                           "then install again (the unfinished environment is removed).") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise ReleaseError(f"{what} failed (exit {proc.returncode}): {tail}",
                           fix="Fix what the message says, then install again (nothing was kept).")
    return proc


def _build(tmp: Path, final: Path, info: WheelInfo, lock_fd: int) -> None:
    wheel = tmp / info.filename
    shutil.copyfile(info.path, wheel)
    if sha256_of(wheel) != info.sha256:
        raise BadWheel(f"{info.filename} changed while it was being installed",
                       fix="Install it again once nothing writes to it.")
    env = tmp / ENV_DIR
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", env],
         "creating the release's environment (python -m venv)", cwd=tmp, lock_fd=lock_fd)
    python = env / "bin" / "python"
    own_site = Path(_run([python, "-E", "-P", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         "asking the new environment for its site-packages", cwd=tmp, lock_fd=lock_fd).stdout.strip())
    _link_control_plane_site(own_site)
    if subprocess.run([str(python), "-E", "-P", "-c", "import pip"], capture_output=True, cwd=tmp,
                      env=runner.child_env()).returncode != 0:
        _run([python, "-E", "-P", "-m", "ensurepip", "--default-pip"], "installing pip (ensurepip)", cwd=tmp,
             lock_fd=lock_fd)
    _run([python, "-E", "-P", "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed",
          "--no-compile", "--no-warn-script-location", "--disable-pip-version-check", "--no-input", "--quiet",
          wheel], f"installing {info.filename} (pip install --no-index --no-deps)", cwd=tmp, lock_fd=lock_fd,
         env=runner.child_env({"PIP_CONFIG_FILE": os.devnull}))
    _retarget_scripts(env, tmp, final)
    _run([python, "-E", "-P", "-m", "compileall", "-q", "-s", tmp, "-p", final, own_site],
         "byte-compiling the release", cwd=tmp, lock_fd=lock_fd)

    probe = runner.call(python, "info", what=f"release {info.version}")
    erp_core_file = Path(probe["erp_core_file"]).resolve()
    if not erp_core_file.is_relative_to(env.resolve()):
        raise ReleaseError(f"the new environment's Python imports erp_core from {erp_core_file}, not from the "
                           f"release it installed ({env})",
                           fix="Remove the erp_core found there from the control plane's path (e.g. an old "
                               "PYTHONPATH entry or a user-site install), then install again.")
    if probe["erp_core_version"].lower() != info.version.lower():
        raise BadWheel(f"{info.filename} says version {info.version} in its METADATA, but its erp_core says "
                       f"{probe['erp_core_version']}", fix="Build the release with the same version in "
                       "pyproject.toml and erp_core/__init__.py.")
    atomic_write_text(tmp / RELEASE_FILE, _release_json(info, probe))
    _fsync_tree(tmp)


def _release_json(info: WheelInfo, probe: dict) -> str:
    data = {"format": FORMAT, "project": info.name, "version": info.version,
            "wheel": {"file": info.filename, "sha256": info.sha256, "size": info.size},
            "installed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "python": {"version": probe["python"]["version"], "executable": sys.executable},
            "erp_core": {"version": probe["erp_core_version"]},
            "schema": {"head": probe["schema_head"], "migrations": probe["migrations"]}}
    return json.dumps(data, indent=1) + "\n"


def _link_control_plane_site(own_site: Path) -> None:
    """When the control plane itself runs in a virtual environment, `--system-site-packages` reaches the
    base interpreter's packages, not the control plane's: add the control plane's site directories after
    the release's own (a .pth line runs site.addsitedir, so their own .pth files work too)."""
    if sys.prefix == sys.base_prefix:
        return
    dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    lines = [f"import site; site.addsitedir({d!r})" for d in dirs]
    (own_site / SITE_PTH).write_text("\n".join(lines) + "\n")


def _retarget_scripts(env: Path, tmp: Path, final: Path) -> None:
    """Scripts pip and venv wrote (shebangs, activate) name the temporary directory; name the final one."""
    for p in [*(env / "bin").iterdir(), env / "pyvenv.cfg"]:
        if p.is_symlink() or not p.is_file():
            continue
        try:
            text = p.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if str(tmp) in text:
            p.write_text(text.replace(str(tmp), str(final)))


def _fsync_tree(root: Path) -> None:
    """Everything under `root` on disk before the rename publishes it."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)
