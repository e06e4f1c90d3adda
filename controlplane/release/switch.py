"""Making a release current: what `erpctl up` serves, what an upgrade or a rollback switches."""

from __future__ import annotations

import logging

from ..config import Target
from ..evidence import EvidenceLog
from . import runner
from .store import current_version, exclusive, get, point_current_at, remove_leftovers

log = logging.getLogger("controlplane.release")


def set_current(target: Target, version: str, *, check_schema: bool = True, reason: str = "",
                actor: str | None = None) -> dict:
    """Make installed release `version` current (atomically: a new link, then one rename) and record the
    switch in the evidence log. Never migrates. With check_schema (the default) the release's own code
    must accept the database's schema first (ReleaseIncompatible with its reason otherwise); an upgrade
    that switches before it migrates, knowingly, passes check_schema=False. ReleaseNotFound for a
    version that is not installed. Returns {"from", "to", "changed", "schema"}."""
    release = get(target, version)
    schema = runner.require_compatible(target, release) if check_schema else None
    with exclusive(target) as (root, _lock):
        remove_leftovers(root)
        before = current_version(target)
        if before == release.version:
            return {"from": before, "to": release.version, "changed": False, "schema": schema}
        point_current_at(root, release.version)
    log.info("switched the current release", extra={"from": before, "to": release.version, "reason": reason})
    EvidenceLog(target.data_dir).append("release_switch", {
        "from": before, "to": release.version, "reason": reason, "schema_checked": check_schema,
        "schema": None if schema is None else {k: schema.get(k) for k in ("current", "code_head", "reason")},
        "wheel_sha256": release.wheel_sha256}, actor=actor)
    return {"from": before, "to": release.version, "changed": True, "schema": schema}
