"""Rotating the fleet's secrets (playbooks/rotate-secrets.yml). The new values are made here and kept in the
control installation (fleet/secrets.pending.yml, mode 0600) until the play has rolled them out on every app
host; then they become the fleet's rotated secrets (fleet/secrets.yml), which every later play gets as extra
variables over the inventory's values (so a later 'erpctl fleet deploy' keeps them). A rotation that failed
half-way is resumed with the same values by the next run. No secret value goes to the evidence log, to the
command line or to the play's output."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import yaml

from .. import layout
from ..errors import SecretRotationRefused
from ..evidence import EvidenceLog
from ..fsutil import fsync_dir
from ..installation import Installation
from . import playbook

SUPPORTED = ("probe-password",)
BY_HAND = ("field-key", "database-url", "backup-passphrase")
VARIABLES = {"probe-password": "erp_probe_password"}
REFUSED = " cannot be rotated safely:"
MSG = re.compile(r'"msg": "((?:[^"\\]|\\.)*)"')


def _write_private(path: Path, values: dict) -> None:
    """Replace `path` with `values` as YAML, mode 0600 from the start, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump(values, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _read(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}


def pending(inst: Installation, names: list[str]) -> tuple[Path, bool]:
    """The file of the new values (a rotation not finished: its values kept), and whether it is resumed."""
    path = layout.path(inst.data_dir, "fleet_secrets_pending")
    values = _read(path)
    resumed = bool(values)
    for name in names:
        if name in VARIABLES and VARIABLES[name] not in values:
            values[VARIABLES[name]] = secrets.token_urlsafe(24)
    _write_private(path, values)
    return path, resumed


def promote(inst: Installation, path: Path) -> None:
    """The rolled-out values become the fleet's rotated secrets; the pending file goes."""
    rotated = layout.path(inst.data_dir, "fleet_secrets")
    _write_private(rotated, {**_read(rotated), **_read(path)})
    path.unlink()
    fsync_dir(path.parent)


def refusal(output: str) -> str | None:
    """The play's refusal message, when it refused a secret (before changing anything)."""
    for m in MSG.finditer(output):
        said = json.loads(f'"{m[1]}"')
        if REFUSED in said:
            return said
    return None


def run(inst: Installation, names: list[str], *, echo: bool) -> tuple[dict, Exception | None]:
    """Run rotate-secrets.yml for `names`; recorded in the evidence log (fleet_rotate_secrets), no value."""
    path, resumed = (pending(inst, names) if set(names) & set(VARIABLES) else (None, False))
    result = playbook.run(inst, "rotate-secrets.yml", echo=echo, extra_vars={"erp_rotate_secrets": names},
                          kind="fleet_playbook", secrets_file=path)
    refused = refusal(result["output"])
    failed = playbook.failure(result)
    if refused is not None:
        failed = SecretRotationRefused(refused, fix="Rotate it by hand as the message says; nothing was changed. "
                                                    f"'erpctl fleet rotate-secrets' rotates: {', '.join(SUPPORTED)}.")
    if failed is None and path is not None:
        promote(inst, path)
    out = {**{k: result[k] for k in ("playbook", "check", "returncode", "seconds", "hosts", "changed", "host_key_refused")},
           "secrets": names, "rotated": [n for n in names if n in SUPPORTED] if failed is None else [],
           "refused": [n for n in names if n not in SUPPORTED], "resumed": resumed,
           "pending": failed is not None and path is not None and refused is None}
    EvidenceLog(inst.data_dir).append("fleet_rotate_secrets", out, outcome="ok" if failed is None else "failed")
    if refused is not None and path is not None and not resumed:
        path.unlink(missing_ok=True)  # nothing was rolled out: no rotation to resume
    return {**out, "output": result["output"]}, failed
