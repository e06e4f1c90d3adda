"""Authentication, role permissions on every endpoint, the audit log, encrypted fields, login limits."""

import re

import pytest
from sqlalchemy import text

from erp_core.api.framework import ANY_USER, OPERATIONS
from erp_core.domain.permissions import ROLES, has
from erp_core.models import Partner
from tests.conftest import Erp, fresh_database_url

PROTECTED = [op for op in OPERATIONS if op.perm is not None]


@pytest.fixture(scope="module")
def shared_erp(request, tmp_path_factory):
    """One ERP for the permission matrix: its requests change nothing (all are refused)."""
    e = Erp(fresh_database_url("sqlite", request, tmp_path_factory.mktemp("matrix")), "sqlite")
    yield e
    e.close()


def _path(op) -> str:
    return re.sub(r"<(?:\w+:)?\w+>", "1", op.rule)


def test_every_operation_but_login_needs_a_token():
    # the login's two steps: the password, then (multi-factor login) the challenge and a one-time code
    assert {op.rule for op in OPERATIONS if op.perm is None} == {"/auth/login", "/auth/login/code"}


@pytest.mark.parametrize("op", PROTECTED, ids=lambda op: f"{op.method} {op.rule}")
def test_401_without_token_403_without_permission(shared_erp, op):
    erp = shared_erp
    r = erp.req(op.method, _path(op), role=None, json={} if op.method != "GET" else None)
    assert r.status_code == 401, r.json
    assert r.mimetype == "application/problem+json" and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = erp.req(op.method, _path(op), role=None, headers={"Authorization": "Bearer not-a-token"},
                json={} if op.method != "GET" else None)
    assert r.status_code == 401
    for role in ROLES:
        if op.perm == ANY_USER or has(role, op.perm):
            continue
        r = erp.req(op.method, _path(op), role=role, json={} if op.method != "GET" else None)
        assert r.status_code == 403, (role, r.json)
        assert op.perm in r.json["fix"]


def test_auditor_reads_everything_and_changes_nothing(sqlite_erp):
    erp = sqlite_erp
    for op in PROTECTED:
        if op.method == "GET":
            assert op.perm == ANY_USER or has("auditor", op.perm), op.rule
        else:
            assert op.perm == ANY_USER or not has("auditor", op.perm), op.rule
    wid = erp.warehouse()
    log = erp.get("/audit-log", role="auditor", query={"entity": "warehouses"})
    assert log["total"] == 1
    entry = log["items"][0]
    assert entry["actor"] == "admin" and entry["action"] == "create" and entry["after"]["code"] == "WH1"
    assert entry["entity_id"] == str(wid)  # a created row is named by its new id
    # the product offers no way to edit the log, and the database refuses it too
    assert not [op for op in OPERATIONS if op.rule.startswith("/audit-log") and op.method != "GET"]
    with pytest.raises(Exception, match="append-only"):
        with erp.db.session() as s:
            s.execute(text("UPDATE audit_log SET actor = 'someone else'"))
    with pytest.raises(Exception, match="append-only"):
        with erp.db.session() as s:
            s.execute(text("DELETE FROM audit_log"))


def test_audit_records_before_and_after_of_an_update(erp):
    p = erp.product("A", "10.00")
    erp.req("PATCH", f"/products/{p}", json={"sale_price": "12.50"}, expect=200)
    rows = erp.get("/audit-log", query={"entity": "products", "action": "update"})["items"]
    assert rows[0]["before"] == {"sale_price": "10.00"} and rows[0]["after"] == {"sale_price": "12.50"}


def test_a_failed_change_leaves_no_audit_entry(erp):
    erp.warehouse("W")
    erp.req("POST", "/warehouses", json={"code": "W", "name": "again"}, expect=409)
    assert erp.get("/audit-log", query={"entity": "warehouses"})["total"] == 1


def test_sensitive_partner_fields_encrypted_at_rest_and_masked(erp):
    pid = erp.customer("ACME", tax_id="91310000123456789X", phone="13800138000")
    with erp.db.engine.connect() as c:
        raw = c.execute(text("SELECT tax_id, phone FROM partners WHERE id = :i"), {"i": pid}).one()
    assert all(v.startswith("v2:") and "1234" not in v and "1380" not in v for v in raw)  # bound to the row
    full = erp.get(f"/partners/{pid}", role="finance")
    assert full["tax_id"] == "91310000123456789X"
    masked = erp.get(f"/partners/{pid}", role="sales")
    assert masked["phone"] == "*******8000" and masked["tax_id"].endswith("789X")
    audit = erp.get("/audit-log", query={"entity": "partners"})["items"][0]
    assert audit["after"]["tax_id"].startswith("v2:") and "789X" not in str(audit)  # encrypted in the log too
    with erp.db.session(write=False) as s:
        assert s.get(Partner, pid).phone == "13800138000"


def test_login_is_rate_limited_and_logged(sqlite_erp):
    erp = sqlite_erp
    for _ in range(5):
        r = erp.client.post("/api/v1/auth/login", json={"username": "sales", "password": "wrong password"})
        assert r.status_code == 401
    r = erp.client.post("/api/v1/auth/login", json={"username": "sales", "password": "correct horse battery"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    failed = erp.get("/audit-log", query={"action": "login_failed"})
    assert failed["total"] == 5 and failed["items"][0]["entity_id"] == "sales"
    # another user is not affected
    assert erp.client.post("/api/v1/auth/login", json={"username": "finance", "password": "correct horse battery"}).status_code == 200


def test_logout_revokes_the_token(sqlite_erp):
    erp = sqlite_erp
    token = erp.token("sales")
    erp.req("POST", "/auth/logout", role="sales", expect=204)
    r = erp.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_passwords_are_hashed_with_argon2(sqlite_erp):
    with sqlite_erp.db.engine.connect() as c:
        hashes = c.execute(text("SELECT password_hash FROM users")).scalars().all()
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
