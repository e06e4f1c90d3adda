"""Segregation of duties on partners' bank accounts: only finance asks, a second finance user approves
(four-eyes); the partner keeps the old account until then; the audit log keeps both values encrypted, which
an operator with the field key reveals (itself audited)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from erp_core import crypto, ops
from erp_core.models import AuditLog
from erp_core.services import auth
from tests.conftest import FIELD_KEY, PASSWORD

OLD, NEW = "SI56 0123 4567 8901 234", "SI56 9999 8888 7777 666"


@pytest.fixture
def fe(erp):
    with erp.db.session() as s:
        auth.add_user(s, "finance2", PASSWORD, "finance", full_name="Second finance")
    return erp


def _supplier_with_account(erp) -> int:
    sid = erp.supplier("S1")
    change = erp.post(f"/partners/{sid}/bank-account-changes", {"bank_account": OLD}, role="finance")
    erp.post(f"/bank-account-changes/{change['id']}/approve", role="finance2", expect=200)
    return sid


def test_only_finance_changes_bank_details(fe):
    sid = fe.supplier("S1")
    for role in ("sales", "purchasing", "admin", "warehouse", "auditor"):
        r = fe.req("POST", f"/partners/{sid}/bank-account-changes", json={"bank_account": NEW}, role=role)
        assert r.status_code == 403, (role, r.json)
    for role in ("sales", "purchasing", "admin"):  # nor by a plain update or at creation
        r = fe.req("PATCH", f"/partners/{sid}", json={"bank_account": NEW}, role=role)
        assert r.status_code == 403 and "second finance user" in r.json["detail"], (role, r.json)
        r = fe.req("POST", "/partners", json={"code": f"X{role}", "name": "X", "is_supplier": True,
                                              "bank_account": NEW}, role=role)
        assert r.status_code == 403 and r.json["field"] == "bank_account", (role, r.json)
    assert fe.get(f"/partners/{sid}", role="finance")["bank_account"] is None
    assert fe.get("/bank-account-changes", role="finance")["total"] == 0


def test_a_change_waits_for_a_second_finance_user(fe):
    sid = _supplier_with_account(fe)
    change = fe.post(f"/partners/{sid}/bank-account-changes", {"bank_account": NEW, "note": "new bank"},
                     role="finance")
    assert change["state"] == "pending" and change["old_value"] == OLD and change["new_value"] == NEW
    assert fe.get(f"/partners/{sid}", role="finance")["bank_account"] == OLD  # payments still go there
    pending = fe.get("/bank-account-changes", role="finance2", query={"state": "pending"})
    assert [c["id"] for c in pending["items"]] == [change["id"]]
    masked = fe.get("/bank-account-changes", role="admin", query={"state": "pending"})["items"][0]
    assert masked["new_value"] == NEW  # admin may see sensitive values, but not change them
    r = fe.req("POST", f"/partners/{sid}/bank-account-changes", json={"bank_account": "SI56 1"}, role="finance2")
    assert r.status_code == 409 and str(change["id"]) in r.json["fix"]  # one pending change per partner
    r = fe.req("POST", f"/bank-account-changes/{change['id']}/approve", role="finance")
    assert r.status_code == 403 and "four-eyes" in r.json["detail"]
    assert fe.get(f"/partners/{sid}", role="finance")["bank_account"] == OLD
    done = fe.post(f"/bank-account-changes/{change['id']}/approve", role="finance2", expect=200)
    assert done["state"] == "approved" and done["decided_by"] == "finance2"
    assert fe.get(f"/partners/{sid}", role="finance")["bank_account"] == NEW
    r = fe.req("POST", f"/bank-account-changes/{change['id']}/reject", json={}, role="finance2")
    assert r.status_code == 409 and "already approved" in r.json["detail"]


def test_a_rejected_change_leaves_the_account(fe):
    sid = _supplier_with_account(fe)
    change = fe.post(f"/partners/{sid}/bank-account-changes", {"bank_account": NEW}, role="finance2")
    r = fe.req("POST", f"/bank-account-changes/{change['id']}/reject", json={"reason": "x"}, role="finance2")
    assert r.status_code == 403
    out = fe.post(f"/bank-account-changes/{change['id']}/reject", {"reason": "not confirmed by phone"},
                  role="finance", expect=200)
    assert out["state"] == "rejected" and out["reason"] == "not confirmed by phone"
    assert fe.get(f"/partners/{sid}", role="finance")["bank_account"] == OLD
    assert fe.get("/bank-account-changes", role="finance", query={"state": "pending"})["total"] == 0


def test_the_audit_log_keeps_both_values_encrypted_for_the_auditor(fe):
    sid = _supplier_with_account(fe)
    change = fe.post(f"/partners/{sid}/bank-account-changes", {"bank_account": NEW}, role="finance")
    fe.post(f"/bank-account-changes/{change['id']}/approve", role="finance2", expect=200)
    entry = fe.get("/audit-log", query={"entity": "partners", "action": "update"})["items"][0]
    assert entry["actor"] == "finance2"
    before, after = entry["before"]["bank_account"], entry["after"]["bank_account"]
    assert before.startswith("v2:") and after.startswith("v2:") and "9999" not in after and before != after
    with pytest.raises(crypto.FieldTampered), crypto.key_loaded("another key"):
        ops.reveal_audit_entry(fe.url, "another key", entry["id"])
    revealed = ops.reveal_audit_entry(fe.url, FIELD_KEY, entry["id"], actor="auditor-tool")
    assert revealed["values"] == {"bank_account": {"before": OLD, "after": NEW}}
    assert revealed["entry"]["entity"] == "partners" and revealed["entry"]["entity_id"] == str(sid)
    reveal = fe.get("/audit-log", query={"entity": "audit_reveal"})["items"][0]
    assert reveal["actor"] == "auditor-tool" and reveal["entity_id"] == str(entry["id"])
    assert NEW not in str(reveal) and OLD not in str(reveal)
    with fe.db.session(write=False) as s:  # the change rows hold both values encrypted, bound to the row
        raw = s.execute(text("SELECT old_value, new_value FROM bank_detail_changes WHERE id = :i"),
                        {"i": change["id"]}).one()
        assert all(v.startswith("v2:") for v in raw)
        assert s.scalar(select(AuditLog.id).where(AuditLog.entity == "bank_detail_changes")) is not None
