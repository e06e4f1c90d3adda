"""erp_core.ops, the ERP's operator interface: what an operator's tool relies on, beyond what the
control plane's own tests already show through it (test_operator.py covers the HTTP side)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import subprocess
import sys

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import text
from sqlalchemy.engine import make_url

from erp_core import crypto, db, ops, stored
from erp_core.errors import Conflict, NotFound, ValidationFailed

SERVICE = "svc-tool"


def _login(erp, username: str, password: str):
    return erp.client.post("/api/v1/auth/login", json={"username": username, "password": password})


def _get_with(erp, token: str):
    return erp.client.get("/api/v1/warehouses", headers={"Authorization": f"Bearer {token}"})


def _service_user(erp, password="first password 1", role="auditor") -> dict:
    with erp.db.session(actor="tool") as s:
        return ops.create_user(s, SERVICE, password, role, full_name="an operator's tool")


# ---- the interface itself -------------------------------------------------------------------------

def test_importing_the_interface_loads_none_of_the_erp():
    heavy = "('sqlalchemy', 'flask', 'waitress', 'alembic', 'erp_core.db')"
    probe = f"import sys, erp_core.ops; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_name_is_documented_and_resolves():
    missing = [name for name in ops.__all__ if name not in ops.__doc__]
    assert not missing, f"not in erp_core.ops's docstring: {missing}"
    for name in ops.__all__:
        assert getattr(ops, name) is not None
    with pytest.raises(AttributeError, match="docstring"):
        ops.User  # noqa: B018 - the models are not part of the interface


# ---- service users --------------------------------------------------------------------------------

def test_a_service_user_is_created_and_logs_in(erp):
    user = _service_user(erp)
    assert {k: user[k] for k in ("username", "role", "active")} == {"username": SERVICE, "role": "auditor",
                                                                     "active": True}
    assert _login(erp, SERVICE, "first password 1").status_code == 200


def test_rotating_a_password_refuses_the_old_one_and_its_tokens(erp):
    _service_user(erp)
    old_token = _login(erp, SERVICE, "first password 1").json["token"]
    with erp.db.session(actor="tool") as s:
        assert ops.set_password(s, SERVICE, "second password 2")["active"] is True
    assert _login(erp, SERVICE, "first password 1").status_code == 401
    assert _get_with(erp, old_token).status_code == 401
    new_token = _login(erp, SERVICE, "second password 2").json["token"]
    assert _get_with(erp, new_token).status_code == 200


def test_deactivating_a_user_stops_its_logins_and_tokens(erp):
    _service_user(erp)
    token = _login(erp, SERVICE, "first password 1").json["token"]
    with erp.db.session(actor="tool") as s:
        assert ops.deactivate_user(s, SERVICE)["active"] is False
    assert _login(erp, SERVICE, "first password 1").status_code == 401
    assert _get_with(erp, token).status_code == 401
    with erp.db.session(actor="tool") as s:  # a rotation brings it back
        ops.set_password(s, SERVICE, "third password 3")
    assert _login(erp, SERVICE, "third password 3").status_code == 200


def test_service_user_mistakes_are_refused_with_a_fix_and_change_nothing(sqlite_erp):
    erp = sqlite_erp
    _service_user(erp)
    cases = [(lambda s: ops.set_password(s, SERVICE, "short"), ValidationFailed, "at least 12"),
             (lambda s: ops.set_password(s, "nobody", "long enough password"), NotFound, "create the user"),
             (lambda s: ops.deactivate_user(s, "nobody"), NotFound, "create the user"),
             (lambda s: ops.create_user(s, SERVICE, "long enough password", "auditor"), Conflict, "another username"),
             (lambda s: ops.create_user(s, "svc-2", "long enough password", "root"), ValidationFailed, "auditor")]
    for call, error, fix in cases:
        with pytest.raises(error) as caught, erp.db.session(actor="tool") as s:
            call(s)
        assert fix in caught.value.fix and caught.value.exit_code == error.exit_code
    assert _login(erp, SERVICE, "first password 1").status_code == 200


# ---- the field key --------------------------------------------------------------------------------

def test_a_field_key_loaded_for_a_block_gives_the_previous_one_back():
    ops.load_field_key("outer key")
    sealed = crypto.encrypt("IBAN DE00 1234")
    with ops.field_key("inner key"):
        with pytest.raises(InvalidTag):
            crypto.decrypt(sealed)
        inner = crypto.encrypt("other")
    assert crypto.decrypt(sealed) == "IBAN DE00 1234"
    with pytest.raises(RuntimeError), ops.field_key("inner key"):
        raise RuntimeError("the block failed")
    assert crypto.decrypt(sealed) == "IBAN DE00 1234"
    with pytest.raises(InvalidTag):
        crypto.decrypt(inner)


# ---- invariants, schema, records ----------------------------------------------------------------

def test_invariants_run_on_a_session_a_connection_or_an_engine(sqlite_erp):
    erp = sqlite_erp
    wh, supplier, product = erp.warehouse(), erp.supplier(), erp.product()
    erp.stock_in(supplier, wh, [(product, 5, "10.00")])
    engine = erp.db.engine
    with erp.db.session(write=False) as s, engine.connect() as c:
        for bind in (s, c, engine):
            result = ops.check_invariants(bind)
            assert result.ok and result.violations == [] and result.checks == ops.invariant_checks()
    with erp.db.session() as s:
        s.execute(text("UPDATE stock_levels SET quantity = 7 WHERE product_id = :p"), {"p": product})
    result = ops.check_invariants(engine)
    assert not result.ok and result.as_dict()["ok"] is False
    assert {v["check"] for v in result.violations} == {"on_hand_matches_moves"}
    assert all(v["ref"] and v["detail"] for v in result.violations)


def test_schema_revision_and_applied_migrations_with_their_stages(erp, tmp_path):
    engine = erp.db.engine
    applied = ops.applied_migrations(engine)
    known = ops.known_migrations()
    assert [(m["revision"], m["stage"]) for m in applied] == [(m["revision"], m["stage"]) for m in known]
    assert all(m["stage"] in ops.STAGES for m in applied)
    with engine.connect() as c, c.begin():  # inside a transaction, e.g. the one a snapshot is taken in
        assert ops.current_revision(c) == ops.code_head() == ops.current_revision(engine)
    empty = ops.make_engine(ops.default_sqlite_url(tmp_path / "empty"))
    try:
        assert ops.applied_migrations(empty) == [] and ops.current_revision(empty) is None
        assert not ops.schema_status(empty).supported
    finally:
        empty.dispose()


def test_the_migrations_are_read_as_alembic_reads_them_without_loading_it():
    scripts = reversed(list(ops.script_directory().walk_revisions()))
    assert ops.known_migrations() == [{"revision": s.revision, "down_revision": s.down_revision,
                                       "stage": getattr(s.module, "stage", None), "doc": s.doc} for s in scripts]
    assert ops.code_head() == ops.script_directory().get_current_head()
    code = "import sys; from erp_core import db; db.code_head(); print('alembic' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("down, problem", [("'0001'", "branch after 0001"), ("'9999'", "not on the chain")])
def test_migrations_off_one_chain_are_refused_naming_the_problem(tmp_path, monkeypatch, down, problem):
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name, rev, parent in (("0001_a.py", "0001", "None"), ("0002_b.py", "0002", "'0001'"),
                              ("0003_c.py", "0003", down)):
        (versions / name).write_text(f'"""{name}"""\nrevision = {rev!r}\ndown_revision = {parent}\nstage = "expand"\n')
    monkeypatch.setattr(stored, "MIGRATIONS_DIR", tmp_path / "migrations")
    stored._migration_chain.cache_clear()
    try:
        with pytest.raises(LookupError, match=problem):
            db.known_migrations()
    finally:
        stored._migration_chain.cache_clear()


def test_writes_since_a_point_of_the_audit_log(sqlite_erp):
    erp = sqlite_erp
    engine = erp.db.engine
    before = ops.writes_since(engine, audit_rows=0, limit=0)["count"]
    mark = dt.datetime.now(dt.timezone.utc)
    erp.warehouse("W2")
    ops.switch_maintenance(erp.url, True, "backup", actor="tool")
    ops.switch_maintenance(erp.url, False, actor="tool")
    lost = ops.writes_since(engine, audit_rows=before)
    assert lost["count"] == len(lost["entries"]) >= 3
    assert [e["actor"] for e in lost["entries"]][-2:] == ["tool", "tool"]
    assert any(e["entity"] == "warehouses" and e["action"] == "create" and e["actor"] == "admin"
               for e in lost["entries"])
    assert ops.writes_since(engine, at=mark) == lost
    others = ops.writes_since(engine, audit_rows=before, exclude_actors=("tool",))
    assert others["count"] == lost["count"] - 2 and all(e["actor"] != "tool" for e in others["entries"])
    first = ops.writes_since(engine, audit_rows=before, limit=1)
    assert first["count"] == lost["count"] and first["entries"] == lost["entries"][:1]
    for wrong in ({}, {"audit_rows": 1, "at": mark}):
        with pytest.raises(ValueError, match="one of"):
            ops.writes_since(engine, **wrong)


def test_numbering_state_is_the_last_number_of_each_series(erp):
    wh, supplier, product = erp.warehouse(), erp.supplier(), erp.product()
    assert "PO" not in ops.numbering_state(erp.db.engine)
    first = erp.stock_in(supplier, wh, [(product, 5, "10.00")])
    erp.stock_in(supplier, wh, [(product, 1, "10.00")])
    state = ops.numbering_state(erp.db.engine)
    assert state["PO"] == 2 and first["number"].endswith("1")


def _copy_of(erp, request, tmp_path) -> str:
    """A copy of the ERP's database as it is now (what a backup restores): its URL."""
    if erp.backend == "sqlite":
        path = tmp_path / "copy.sqlite3"
        src, dst = sqlite3.connect(make_url(erp.url).database), sqlite3.connect(path)
        src.backup(dst)
        src.close(), dst.close()
        return f"sqlite:///{path}"
    from tests.conftest import clone_pg_database

    erp.db.dispose()  # a template database takes no other connections
    return clone_pg_database(make_url(erp.url).database, "erp_copy", request)


def test_writes_a_copy_lacks_are_listed_with_their_document_numbers(erp, request, tmp_path):
    wh, supplier, product = erp.warehouse(), erp.supplier(), erp.product()
    copy = _copy_of(erp, request, tmp_path)
    po = erp.stock_in(supplier, wh, [(product, 5, "10.00")])
    ops.switch_maintenance(erp.url, True, "restore", actor="tool")
    copy_engine = ops.make_engine(copy)
    try:
        lost = ops.writes_since(erp.db.engine, not_in=copy_engine, exclude_entities=("system_settings",),
                                exclude_actions=("login",), limit=None)
        assert ops.writes_since(copy_engine, not_in=copy_engine)["count"] == 0
    finally:
        copy_engine.dispose()
    orders = [e for e in lost["entries"] if e["entity"] == "purchase_orders" and e["action"] == "create"]
    assert [(e["entity_id"], e["number"]) for e in orders] == [(str(po["id"]), po["number"])]
    assert lost["count"] == len(lost["entries"]) == sum(g["count"] for g in lost["groups"])
    assert not any(e["entity"] == "system_settings" or e["action"] == "login" for e in lost["entries"])
    assert lost["first_at"] <= lost["last_at"]


def test_raise_numbering_hands_out_no_number_or_id_twice(erp, request, tmp_path):
    wh, supplier, product = erp.warehouse(), erp.supplier(), erp.product()
    copy = _copy_of(erp, request, tmp_path)
    handed = [erp.stock_in(supplier, wh, [(product, 1, "10.00")]) for _ in range(3)]
    partner = erp.customer("LATE")
    floors = ops.numbering_floors(erp.db.engine)
    assert floors["series"]["PO"] == 3
    raised = ops.raise_numbering(copy, floors)
    assert raised["series"]["PO"] == [0, 3]
    assert ops.raise_numbering(copy, floors) == {"series": {}, "ids": {}}  # never twice, never lower
    assert ops.raise_numbering(copy, {"series": {"PO": 1}, "ids": {}}) == {"series": {}, "ids": {}}
    from tests.conftest import Erp

    restored = Erp(copy, erp.backend)
    try:
        po = restored.stock_in(restored.supplier("S9"), wh, [(product, 1, "10.00")])
        assert po["number"] > max(p["number"] for p in handed)
        assert po["id"] > max(p["id"] for p in handed)
        assert restored.customer("NEW") > partner
        again = ops.numbering_floors(restored.db.engine)
        assert all(again["ids"].get(k, 0) >= v for k, v in floors["ids"].items())
    finally:
        restored.close()


def test_maintenance_switched_in_its_own_transaction(erp):
    assert ops.switch_maintenance(erp.url) == {"enabled": False, "reason": ""}
    assert ops.switch_maintenance(erp.url, True, "restore", actor="tool") == {"enabled": True, "reason": "restore"}
    assert erp.client.get("/readyz").status_code == 503
    with erp.db.session(write=False) as s:
        assert ops.maintenance_state(s) == {"enabled": True, "reason": "restore"}
    ops.switch_maintenance(erp.url, False, actor="tool")
    assert erp.client.get("/readyz").status_code == 200


def test_the_revision_of_an_sqlite_file_read_without_sqlalchemy(sqlite_erp, tmp_path):
    path = make_url(sqlite_erp.url).database
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        assert ops.sqlite_file_revision(conn) == ops.code_head()
    with contextlib.closing(sqlite3.connect(tmp_path / "new.sqlite3")) as conn:
        assert ops.sqlite_file_revision(conn) is None


def test_the_maintenance_switch_of_an_sqlite_file_read_without_sqlalchemy_says_what_the_database_says(
        sqlite_erp, tmp_path):
    path = make_url(sqlite_erp.url).database
    status, state = ops.sqlite_maintenance(path)
    assert status == ops.schema_status(sqlite_erp.db.engine) and status.supported
    assert state == ops.switch_maintenance(sqlite_erp.url) == {"enabled": False, "reason": ""}
    ops.switch_maintenance(sqlite_erp.url, True, "restore", actor="tool")
    assert ops.sqlite_maintenance(path)[1] == {"enabled": True, "reason": "restore"}
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:  # a newer release's contract migration
        conn.execute("INSERT INTO erp_schema_migrations (revision, stage, applied_at) VALUES ('9999', 'contract', "
                     "'2030-01-01 00:00:00')")
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    status, state = ops.sqlite_maintenance(path)  # not served by this code, but the switch is still read
    assert status == ops.schema_status(sqlite_erp.db.engine) and not status.supported
    assert "contract migrations this code predates: 9999" in status.reason
    assert state == {"enabled": True, "reason": "restore"}
    with pytest.raises(sqlite3.OperationalError):  # never creates a database
        ops.sqlite_maintenance(tmp_path / "none.sqlite3")
    assert not (tmp_path / "none.sqlite3").exists()
