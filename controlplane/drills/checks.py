"""Checks of a drill's sandbox beyond the ERP's own (readyz, `erpctl erp check`, a business write): that
the field key decrypts every encrypted value stored, and that the release serving is the expected one.
Each returns (passed, detail)."""

from __future__ import annotations

import json

import requests
from sqlalchemy import create_engine

from erp_core import ops

from .. import layout

EVERY = 10**9  # ops.field_key_check's sample: every stored value, not the newest few


def field_key(box) -> tuple[bool, str]:
    """The key in the sandbox's field.key decrypts every encrypted value stored (each one read), there is at
    least one, and `erpctl field-key check` (the operator's check, which also reads the escrow copy) agrees."""
    path = layout.path(box.data_dir, "field_key")
    if not path.exists():
        return False, f"no field key at {path}"
    url = box.database_url or f"sqlite:///{layout.path(box.data_dir, 'database')}"
    eng = create_engine(ops.normalise_url(url))
    try:
        with eng.connect() as c:
            got = ops.field_key_check(c, path.read_text().strip(), sample=EVERY)
    finally:
        eng.dispose()
    r = box.erpctl("--json", "field-key", "check")
    said = json.loads(r.stdout) if r.returncode == 0 and r.stdout.startswith("{") else {}
    ok = got["ok"] and got["checked"] > 0 and r.returncode == 0 and said.get("escrowed") is True
    return ok, (f"{got['checked'] - got['failed']} of {got['checked']} encrypted values decrypt "
                f"({', '.join(got['fields'])}); erpctl field-key check exit {r.returncode}, "
                f"escrowed {said.get('escrowed')}")


def release(box, expected: str) -> tuple[bool, str]:
    """The ERP answering is `expected` (/healthz) and it is the sandbox's current release (when it has one)."""
    try:
        seen = requests.get(box.erp_url + "/healthz", timeout=5).json().get("version")
    except (requests.RequestException, ValueError) as exc:
        seen = f"no answer ({type(exc).__name__})"
    r = box.erpctl("--json", "release", "list")
    current = None
    if r.returncode == 0 and r.stdout.startswith("{"):
        current = json.loads(r.stdout).get("current")
    ok = seen == expected and (box.release is None or current == expected)
    return ok, f"the ERP serves release {seen} (expected {expected}); current release {current}"
