"""Operator actions on the encrypted fields with the field key in use: re-encrypt release 1.0's values bound
to their row (after the upgrade's contract step), and reveal an audit log entry's encrypted values (old and
new bank accounts) for an auditor. Both go to the evidence log (the revealed values never do) and to the ERP's
audit log."""

from __future__ import annotations

import getpass

from erp_core import ops

from . import config, erp_admin
from .evidence import EvidenceLog
from .installation import Installation

ACTOR = "erpctl"


def _actor() -> str:
    try:
        return f"{ACTOR}:{getpass.getuser()}"[:64]
    except (KeyError, OSError):  # no name for this uid (a container)
        return ACTOR


def rewrap(target, batch: int = 200) -> dict:
    inst = Installation.of(target)
    key = config.field_key(inst, create=False)
    with erp_admin.open_database(inst):
        pass  # a migrated, supported schema (refused with the reason otherwise)
    result = ops.rewrap_fields(inst.database_url, key, batch=batch, actor=_actor())
    EvidenceLog(inst.data_dir).append("field_key.rewrap", result)
    return result


def reveal(target, entry_id: int) -> dict:
    inst = Installation.of(target)
    key = config.field_key(inst, create=False)
    with erp_admin.open_database(inst):
        pass
    actor = _actor()
    result = ops.reveal_audit_entry(inst.database_url, key, entry_id, actor=actor)
    EvidenceLog(inst.data_dir).append("field_key.reveal", {"audit_entry": result["entry"], "by": actor,
                                                           "columns": sorted(result["values"])})
    return result
