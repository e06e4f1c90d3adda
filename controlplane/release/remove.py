"""Removing an installed release (`erpctl release remove`): never the current one, one an `erpctl up`
still serves, or one an upgrade needs. The directory is renamed out of the listing first (one
rename, under the releases lock), then deleted: a killed removal leaves a leftover the next
install, switch or removal deletes, never a half-release that is listed."""

from __future__ import annotations

import logging
import os
import shutil

import psutil

from ..config import Target
from ..errors import ReleaseInUse
from ..evidence import EvidenceLog
from ..fsutil import fsync_dir
from ..upgrade import state as upgrade_state
from .store import TMP_PREFIX, current_version, exclusive, get, remove_leftovers
from .supervisor import read_serving

log = logging.getLogger("controlplane.release")


def _in_use(target: Target, version: str) -> tuple[str, str] | None:
    """(why, fix) when something needs `version` and no --force may override it."""
    if current_version(target) == version:
        return "it is the current release", "Make another release current first ('erpctl release current VERSION')."
    serving = read_serving(target)
    if (serving.get("version") == version and not serving.get("bundled") and serving.get("pid")
            and psutil.pid_exists(serving["pid"])):
        return (f"'erpctl up' still serves it (ERP process {serving['pid']})",
                "Wait until 'erpctl up' follows the current release (a few seconds), or stop it.")
    st = upgrade_state.load(target.data_dir)
    if st and not st.finished and version in (st.from_version, st.to_version):
        return (f"upgrade {st.id} ({st.from_version or 'bundled'} -> {st.to_version}) is in "
                f"progress (status {st.status}, stage {st.stage})",
                "Finish or roll back the upgrade first ('erpctl upgrade status').")
    return None


def _rollback_needs(target: Target, version: str) -> str | None:
    """Why a rollback of the last finished upgrade needs `version`: it switches back to it."""
    last = (upgrade_state.history(target.data_dir) or [None])[-1]
    if last and last.status == "done" and last.from_version == version:
        return (f"the last upgrade ({version} -> {last.to_version}, {last.id}) came from it, and "
                "'erpctl upgrade rollback' switches back to it")
    return None


def remove(target: Target, version: str, *, force: bool = False, actor: str | None = None) -> dict:
    """Remove installed release `version`: ReleaseNotFound if it is not installed; ReleaseInUse if it is
    current, still served, or an upgrade in progress needs it, and, unless force, if the last finished
    upgrade came from it (its rollback could not switch back). Recorded in the evidence log."""
    release = get(target, version)
    with exclusive(target) as (root, _lock):
        remove_leftovers(root)
        in_use = _in_use(target, release.version)
        if in_use:
            raise ReleaseInUse(f"release {version} is in use: {in_use[0]}", fix=in_use[1], version=version)
        rollback = _rollback_needs(target, release.version)
        if rollback and not force:
            raise ReleaseInUse(f"release {version} is kept: {rollback}", version=version,
                               fix="Keep it while a rollback may be wanted, or pass --force to remove it anyway.")
        doomed = root / f"{TMP_PREFIX}removed-{release.version}-{os.getpid()}"
        os.replace(release.path, doomed)  # out of the listing, in one step
        fsync_dir(root)
    shutil.rmtree(doomed, ignore_errors=True)
    log.info("removed a release", extra={"version": release.version, "forced": bool(rollback)})
    EvidenceLog(target.data_dir).append("release_remove", {
        "version": release.version, "wheel_sha256": release.wheel_sha256, "kept_for_rollback_but_forced": rollback},
        actor=actor)
    return {"removed": release.version, "path": str(release.path), "forced_past": rollback}
