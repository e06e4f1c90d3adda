"""Encrypted fields bound to their row (AES-GCM associated data: table, column, row id): a value moved to
another row fails to decrypt with an error naming the row; release 1.0's values keep decrypting until
re-encrypted; a passphrase field key is stretched with scrypt and the salt stored in the database."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import text

from erp_core import crypto, ops
from erp_core.db import Database, migrate
from erp_core.errors import RewrapRefused
from erp_core.models import Partner
from tests.conftest import FIELD_KEY


def _raw(db, pid, column="bank_account"):
    with db.engine.connect() as c:
        return c.execute(text(f"SELECT {column} FROM partners WHERE id = :i"), {"i": pid}).scalar()


def _two_partners(erp):
    with erp.db.session() as s:  # set as the seed does (a user's change goes through two finance users)
        a = Partner(code="A", name="A", is_supplier=True, bank_account="SI56 1111", tax_id="TAX-A")
        b = Partner(code="B", name="B", is_supplier=True, bank_account="SI56 2222", tax_id="TAX-B")
        s.add_all([a, b])
        s.flush()
        return a.id, b.id


def test_swapped_bank_accounts_fail_to_decrypt(erp):
    a, b = _two_partners(erp)
    assert erp.get(f"/partners/{a}", role="finance")["bank_account"] == "SI56 1111"
    va, vb = _raw(erp.db, a), _raw(erp.db, b)
    assert va.startswith("v2:") and vb.startswith("v2:")
    with erp.db.engine.begin() as c:
        c.execute(text("UPDATE partners SET bank_account = :v WHERE id = :i"), {"v": vb, "i": a})
        c.execute(text("UPDATE partners SET bank_account = :v WHERE id = :i"), {"v": va, "i": b})
    for pid in (a, b):
        r = erp.req("GET", f"/partners/{pid}", role="finance")
        assert r.status_code == 500 and r.json["table"] == "partners" and r.json["column"] == "bank_account"
        assert r.json["row_id"] == str(pid) and "1111" not in r.get_data(as_text=True)
        assert "2222" not in r.get_data(as_text=True)
    with pytest.raises(crypto.FieldTampered, match=f"partners.bank_account of row {a}"), \
            erp.db.session(write=False) as s:
        s.get(Partner, a)
    # nor into another column of the same row
    with erp.db.engine.begin() as c:
        c.execute(text("UPDATE partners SET bank_account = :v, tax_id = :t WHERE id = :i"),
                  {"v": va, "t": va, "i": b})
    with pytest.raises(crypto.FieldTampered, match="partners.tax_id"), erp.db.session(write=False) as s:
        s.get(Partner, b)
    assert not ops.field_key_check(erp.db.engine, FIELD_KEY)["ok"]


def test_a_plain_value_is_not_written_behind_the_orm(sqlite_erp):
    with pytest.raises(Exception, match="through the ORM only"), sqlite_erp.db.session() as s:
        s.execute(Partner.__table__.update().values(bank_account="SI56 3333"))


def test_release_1_0_values_keep_decrypting_until_rewrapped(sqlite_erp):
    erp = sqlite_erp
    a, b = _two_partners(erp)
    legacy = crypto.encrypt("SI56 0000 1.0")  # as release 1.0 wrote it: v1, bound to nothing
    with erp.db.engine.begin() as c:
        c.execute(text("UPDATE partners SET bank_account = :v WHERE id = :i"), {"v": legacy, "i": a})
    assert erp.get(f"/partners/{a}", role="finance")["bank_account"] == "SI56 0000 1.0"
    result = ops.rewrap_fields(erp.url, FIELD_KEY)
    assert result["rewrapped"] == {"partners.bank_account": 1}
    assert _raw(erp.db, a).startswith("v2:")
    assert erp.get(f"/partners/{a}", role="finance")["bank_account"] == "SI56 0000 1.0"
    assert ops.rewrap_fields(erp.url, FIELD_KEY)["rewrapped"] == {}  # nothing left
    assert ops.field_key_check(erp.db.engine, FIELD_KEY) | {"fields": None} == \
        {"checked": 4, "failed": 0, "ok": True, "fields": None}
    entry = erp.get("/audit-log", query={"entity": "field_key"})["items"][0]
    assert entry["entity_id"] == "rewrap" and entry["after"]["rewrapped"] == {"partners.bank_account": 1}


def test_before_the_contract_step_release_1_0_format_is_written(tmp_path):
    """Release 1.0 may still run (or come back by a rollback) before 0004: it cannot read v2, so v1 is written
    and the re-encryption is refused."""
    url = f"sqlite:///{tmp_path / 'erp.sqlite3'}"
    migrate(url, "0003")
    db = Database(url)
    try:
        with db.session() as s:
            p = Partner(code="A", name="A", is_customer=True, bank_account="SI56 4444")
            s.add(p)
            s.flush()
            pid = p.id
        assert _raw(db, pid).startswith("v1:") and crypto.decrypt(_raw(db, pid)) == "SI56 4444"
        with pytest.raises(RewrapRefused, match="release 1.0 may still run"):
            ops.rewrap_fields(url, FIELD_KEY)
        migrate(url)
        assert ops.rewrap_fields(url, FIELD_KEY)["rewrapped"] == {"partners.bank_account": 1}
        with db.session(write=False) as s:
            assert s.get(Partner, pid).bank_account == "SI56 4444"
    finally:
        db.dispose()


def test_a_passphrase_key_is_stretched_with_scrypt_and_the_stored_salt(sqlite_erp):
    erp = sqlite_erp
    a, _ = _two_partners(erp)
    stored = _raw(erp.db, a)
    with erp.db.engine.connect() as c:
        kdf = json.loads(c.execute(text("SELECT value FROM system_settings WHERE key = 'field_key_kdf'")).scalar())
    assert kdf["name"] == "scrypt" and kdf["n"] >= 2**15 and len(base64.b64decode(kdf["salt"])) == 16
    blob = base64.urlsafe_b64decode(stored[3:])
    aad = b"erp-field-v2\x00partners\x00bank_account\x00" + str(a).encode()
    key = Scrypt(salt=base64.b64decode(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(
        FIELD_KEY.encode())
    assert AESGCM(key).decrypt(blob[:12], blob[12:], aad) == b"SI56 1111"
    import hashlib

    with pytest.raises(InvalidTag):  # not release 1.0's unsalted SHA-256 of the passphrase
        AESGCM(hashlib.sha256(FIELD_KEY.encode()).digest()).decrypt(blob[:12], blob[12:], aad)
    # a raw 32-byte key (the data directory's field.key) is used as it is
    raw_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with crypto.key_loaded(raw_key):
        assert not crypto.is_passphrase()
        sealed = crypto.seal("x", "partners", "phone", 7, None)
        assert crypto.unseal(sealed, "partners", "phone", 7, None) == "x"
        with pytest.raises(crypto.FieldTampered, match="partners.phone of row 8"):
            crypto.unseal(sealed, "partners", "phone", 8, None)


def test_a_users_mfa_secret_is_checked_and_rewrapped_with_the_other_fields(sqlite_erp):
    """The TOTP secret is an encrypted field too (bound to its user): the field-key check reads it, and a
    release-1.0-format value of it is re-encrypted bound to its user."""
    from erp_core.models import User
    from erp_core.services import mfa

    erp = sqlite_erp
    with erp.db.session() as s:
        user = s.query(User).filter_by(username="sales").one()
        secret, uid = mfa.begin_enrolment(s, user), user.id
    assert ops.field_key_check(erp.db.engine, FIELD_KEY)["fields"][-1] == "user_mfa.secret"
    assert ops.field_key_check(erp.db.engine, FIELD_KEY) | {"fields": None} == \
        {"checked": 1, "failed": 0, "ok": True, "fields": None}
    assert not ops.field_key_check(erp.db.engine, "another key of enough length 0123456789")["ok"]
    with erp.db.engine.begin() as c:
        c.execute(text("UPDATE user_mfa SET secret = :v WHERE user_id = :u"), {"v": crypto.encrypt(secret), "u": uid})
    assert ops.rewrap_fields(erp.url, FIELD_KEY)["rewrapped"] == {"user_mfa.secret": 1}
    with erp.db.engine.connect() as c:
        assert c.execute(text("SELECT secret FROM user_mfa WHERE user_id = :u"), {"u": uid}).scalar().startswith("v2:")
    with erp.db.session(write=False) as s:
        assert mfa.pending_secret(s, uid) == secret
