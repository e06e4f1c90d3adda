"""Field-key escrow: the key's copy sealed with a passphrase or to an RSA public key, outside the data
directory; recovery proves the key on the encrypted fields stored in the database before putting it back;
everything is in the evidence log and the key itself never appears in output or evidence."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane import config, escrow, layout
from controlplane.config import Target
from erp_core import crypto
from erp_core.db import Database
from erp_core.models.partners import Partner
from tests.conftest import fresh_database_url

from .cli_helpers import erpctl, ok, ok_json

PASSPHRASE = "correct horse battery staple"


def _key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def site(backend, request, tmp_path):
    """A data directory whose field.key encrypted a partner's tax id and phone in its database."""
    url = fresh_database_url(backend, request, tmp_path)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key = _key()
    config.write_private(layout.path(data, "field_key"), key + "\n")
    db = Database(url)
    with crypto.key_loaded(key), db.session() as s:
        s.add(Partner(code="C1", name="Customer", is_customer=True, tax_id="91310000MA1FL0000X", phone="13800000000"))
    db.dispose()
    return {"ERPCTL_DATA_DIR": str(data), "ERPCTL_DATABASE_URL": url}, data, key


def _evidence(data) -> list[dict]:
    return [json.loads(line) for line in layout.path(data, "evidence").read_text().splitlines()]


def test_a_lost_key_is_recovered_from_its_escrow_copy_once_proven(site):
    env, data, key = site
    made = ok_json("field-key", "escrow", ERPCTL_ESCROW_PASSPHRASE=PASSPHRASE, **env)
    copy = data.parent / f"{data.name}.field-key.escrow"
    assert made["file"] == str(copy) and not made["inside_data_dir"] and made["methods"] == ["passphrase"]
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and key not in copy.read_text()
    checked = ok_json("field-key", "check", **env)
    assert (checked["ok"], checked["checked"], checked["escrowed"]) == (True, 2, True)

    layout.path(data, "field_key").write_text(_key() + "\n")  # lost: another key in its place
    assert erpctl("field-key", "check", **env).returncode == 92
    assert erpctl("field-key", "recover", "--yes", ERPCTL_ESCROW_PASSPHRASE="wrong one", **env).returncode == 91
    r = ok("--json", "field-key", "recover", "--yes", ERPCTL_ESCROW_PASSPHRASE=PASSPHRASE, **env)
    got = json.loads(r.stdout)
    assert (got["ok"], got["checked"], got["failed"]) == (True, 2, 0) and got["replaced"]
    assert layout.path(data, "field_key").read_text().strip() == key
    assert ok_json("field-key", "check", **env)["ok"]

    records = _evidence(data)
    assert [(x["kind"], x["outcome"]) for x in records] == [("field_key.escrow", "ok"), ("field_key.recover", "ok")]
    assert records[1]["data"]["key_fingerprint"] == made["key_fingerprint"]
    assert key not in layout.path(data, "evidence").read_text() and key not in r.stdout + r.stderr
    ok("evidence", "verify", **env)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_copy_of_another_key_is_refused_and_nothing_is_written(site, tmp_path):
    env, data, key = site
    other = tmp_path / "other.escrow"
    wrong = _key()
    layout.path(data, "field_key").write_text(wrong + "\n")
    ok("field-key", "escrow", "--out", other, ERPCTL_ESCROW_PASSPHRASE=PASSPHRASE, **env)  # escrows the wrong key
    layout.path(data, "field_key").unlink()
    r = erpctl("field-key", "recover", "--from", other, ERPCTL_ESCROW_PASSPHRASE=PASSPHRASE, **env)
    assert r.returncode == 92 and "does not decrypt 2 of the 2" in r.stderr, r.stderr
    assert not layout.path(data, "field_key").exists()
    assert _evidence(data)[-1]["kind"] == "field_key.recover" and _evidence(data)[-1]["outcome"] == "failed"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_copy_sealed_to_an_rsa_public_key_opens_with_its_private_key(site, tmp_path):
    env, data, key = site
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_private, pem_public = tmp_path / "escrow.pem", tmp_path / "escrow.pub.pem"
    pem_private.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    pem_public.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    assert erpctl("field-key", "escrow", **env).returncode == 90  # no escrow secret set: nothing written
    ok("field-key", "escrow", ERPCTL_ESCROW_PUBLIC_KEY=str(pem_public), **env)
    layout.path(data, "field_key").unlink()
    assert erpctl("field-key", "recover", ERPCTL_ESCROW_PASSPHRASE=PASSPHRASE, **env).returncode == 90
    got = ok_json("field-key", "recover", "--private-key", pem_private, **env)
    assert got["ok"] and not got["replaced"] and layout.path(data, "field_key").read_text().strip() == key


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_key_is_escrowed_when_it_is_created(tmp_path, monkeypatch, backend):
    """What the first `erpctl up` does: the new key gets its escrow copy when an escrow secret is set."""
    monkeypatch.delenv("ERP_FIELD_KEY", raising=False)
    monkeypatch.setenv("ERPCTL_ESCROW_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("ERPCTL_ESCROW_FILE", raising=False)
    data = tmp_path / "data"
    key = config.field_key(Target(data, f"sqlite:///{data / 'erp.sqlite3'}"), create=True)
    doc = json.loads((tmp_path / "data.field-key.escrow").read_text())
    assert escrow.open_copy(doc, passphrase=PASSPHRASE) == key
    (rec,) = _evidence(data)
    assert rec["kind"] == "field_key.escrow" and rec["data"]["reason"] == "the field key was created"
