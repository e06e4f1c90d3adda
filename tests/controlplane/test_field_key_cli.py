"""erpctl field-key rewrap (release 1.0's values bound to their row, refused before the contract step) and
erpctl field-key reveal (an audit entry's encrypted values for an auditor, audited and in the evidence log)."""

from __future__ import annotations

import base64
import json
import os

from sqlalchemy import select, text

from controlplane import config, layout
from erp_core import crypto
from erp_core.db import Database, migrate
from erp_core.models import AuditLog, Partner

from .cli_helpers import erpctl, ok_json


def _site(tmp_path, revision="head"):
    url = f"sqlite:///{tmp_path / 'erp.sqlite3'}"
    migrate(url, revision)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    config.write_private(layout.path(data, "field_key"), key + "\n")
    return {"ERPCTL_DATA_DIR": str(data), "ERPCTL_DATABASE_URL": url}, url, key, data


def _evidence(data) -> list[dict]:
    return [json.loads(line) for line in layout.path(data, "evidence").read_text().splitlines()]


def test_rewrap_binds_release_1_0_values_and_reveal_shows_an_audited_change(tmp_path):
    env, url, key, data = _site(tmp_path)
    db = Database(url)
    with crypto.key_loaded(key):
        with db.session(actor="finance") as s:
            p = Partner(code="S1", name="Supplier", is_supplier=True, bank_account="SI56 0001")
            s.add(p)
            s.flush()
            pid = p.id
        with db.engine.begin() as c:  # as release 1.0 left it
            c.execute(text("UPDATE partners SET bank_account = :v WHERE id = :i"),
                      {"v": crypto.encrypt("SI56 0001"), "i": pid})
        with db.session(actor="finance2") as s:
            s.get(Partner, pid).bank_account = "SI56 0002"
        with db.session(write=False) as s:
            entry = s.scalars(select(AuditLog.id).where(AuditLog.entity == "partners", AuditLog.action == "update")
                              ).one()
    out = ok_json("field-key", "rewrap", **env)
    assert out["rewrapped"] == {} and out["passes"] == 1  # the update above sealed it bound already
    shown = ok_json("field-key", "reveal", entry, **env)
    assert shown["values"] == {"bank_account": {"before": "SI56 0001", "after": "SI56 0002"}}
    human = erpctl("field-key", "reveal", entry, **env)
    assert human.returncode == 0 and "'SI56 0001' -> 'SI56 0002'" in human.stdout
    record = [r for r in _evidence(data) if r["kind"] == "field_key.reveal"][-1]
    assert "SI56" not in json.dumps(record)
    with db.session(write=False) as s:
        reveals = s.scalars(select(AuditLog).where(AuditLog.entity == "audit_reveal")).all()
        assert [r.entity_id for r in reveals] == [str(entry), str(entry)] and reveals[0].actor.startswith("erpctl")
    missing = erpctl("field-key", "reveal", 99999, **env)
    assert missing.returncode == 122 and "does not exist" in missing.stderr
    plain = erpctl("field-key", "reveal", reveals[0].id, **env)  # an entry with no encrypted value
    assert plain.returncode == 123 and "holds no encrypted value" in plain.stderr, plain.stderr
    created = ok_json("field-key", "reveal", 1, **env)  # the partner's creation: its first account
    assert created["values"] == {"bank_account": {"before": None, "after": "SI56 0001"}}
    db.dispose()


def test_rewrap_is_refused_while_release_1_0_may_run(tmp_path):
    env, url, key, data = _site(tmp_path, "0003")
    db = Database(url)
    with crypto.key_loaded(key), db.session() as s:
        s.add(Partner(code="C1", name="Customer", is_customer=True, phone="13800000000"))
    r = erpctl("field-key", "rewrap", **env)
    assert r.returncode == 121 and "contract" in r.stderr, (r.returncode, r.stderr)
    with db.engine.connect() as c:
        assert c.execute(text("SELECT phone FROM partners")).scalar().startswith("v1:")
    migrate(url)
    out = ok_json("field-key", "rewrap", **env)
    assert out["rewrapped"] == {"partners.phone": 1}
    assert [r for r in _evidence(data) if r["kind"] == "field_key.rewrap"][-1]["data"]["rewrapped"] \
        == {"partners.phone": 1}
    db.dispose()
