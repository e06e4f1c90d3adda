"""Signed evidence and its anchors: every way of rewriting the log is named by `erpctl evidence verify`
(run as a process), through an anchor when the log alone cannot tell (a removed tail, a removed log,
a chain rewritten without the key); the key stays outside the data directory, 0600; an auditor's copy
of the public key checks a copy of the data directory; a changed byte of an attested file is found."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controlplane import evidence_keys
from controlplane.evidence import EvidenceLog, attest_file, record_hash
from controlplane.installation import Installation

from .cli_helpers import erpctl, ok

TAMPERED, KEY_REFUSED, UNATTESTED = 15, 18, 19
FILES = ("evidence.jsonl", "evidence.head", "evidence.pub")
PASS = {"ERPCTL_BACKUP_PASSPHRASE": "evidence anchor test"}


def _log(data_dir, environ=None, n=4) -> EvidenceLog:
    inst = Installation.open(data_dir, environ={**os.environ, **(environ or {})})
    log = EvidenceLog(data_dir, installation=inst)
    for i in range(n):
        log.append("backup.verify", {"backup": f"b{i}", "levels": [{"level": 1, "ok": True}]})
    return log


def _write(log: EvidenceLog, records: list[dict], head: bool = False) -> None:
    log.path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))
    if head:  # what someone rewriting the log would also do
        last = records[-1] if records else {"seq": 0, "hash": "0" * 64}
        log.head_path.write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}))


def _verify(data_dir, *extra, **env):
    r = erpctl("--json", "evidence", "verify", "--data-dir", data_dir, *extra, **env)
    return r, json.loads(r.stdout) if r.stdout.strip() else None


def _rechain(records: list[dict], key: Ed25519PrivateKey | None) -> list[dict]:
    """Every record rewritten after an edit: hashes, links and (with a key) signatures recomputed."""
    prev = "0" * 64
    out = []
    for rec in records:
        rec = {k: v for k, v in rec.items() if k not in ("sig", "key_id")}
        rec["prev"] = prev
        if key is not None:
            rec["key_id"] = evidence_keys.key_id(key.public_key())
        rec["hash"] = record_hash(rec)
        if key is not None:
            rec["sig"] = base64.b64encode(key.sign(rec["hash"].encode())).decode()
        out.append(rec)
        prev = rec["hash"]
    return out


# ---- signing, the key, the actor ---------------------------------------------------------------

def test_records_are_signed_with_a_key_outside_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("ERPCTL_OPERATOR", "alice@ops")
    log = _log(tmp_path / "data", n=2)
    recs = log.records()
    assert all(r["sig"] and r["key_id"] == recs[0]["key_id"] for r in recs)
    assert recs[0]["actor"] == "alice@ops" and recs[0]["os_user"]  # the operator, and who ran it on the host
    key = log.signer().path
    assert tmp_path / "data" not in key.parents and key.name.startswith("evidence-")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert evidence_keys.read_public_keys(tmp_path / "data" / "evidence.pub").keys() == {recs[0]["key_id"]}
    out = json.loads(ok("--json", "evidence", "verify", "--data-dir", tmp_path / "data").stdout)
    assert out["ok"] and out["signed"] == 2 and out["unsigned_through"] == 0


def test_a_key_file_others_can_read_is_refused(tmp_path):
    data = tmp_path / "data"
    key = tmp_path / "keys" / "evidence.key"
    env = {"ERPCTL_EVIDENCE_KEY_FILE": str(key)}
    ok("evidence", "public-key", "--data-dir", data, **env)  # made at first use
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    r = erpctl("evidence", "public-key", "--data-dir", data, **env)
    assert r.returncode == KEY_REFUSED and "may be read or written by others (mode 0644)" in r.stderr
    assert f"chmod 600 {key}" in r.stderr
    with pytest.raises(Exception, match="may be read or written by others"):
        _log(data, env, n=1)
    assert not (data / "evidence.jsonl").exists()  # nothing recorded unsigned instead


# ---- tampering the log alone shows --------------------------------------------------------------

FIELDS = ("seq", "at", "kind", "outcome", "actor", "os_user", "host", "data", "prev", "key_id", "sig", "hash")


def _edit(value):
    if isinstance(value, int):
        return value + 7
    if isinstance(value, dict):
        return {**value, "backup": "other"}
    return value[:-2] + ("AA" if not value.endswith("AA") else "BB")


def test_editing_any_field_of_any_record_is_named(tmp_path):
    """In process, every field of every record; the same check as the command's."""
    log = _log(tmp_path, n=4)
    good = log.records()
    for i in range(len(good)):
        for name in FIELDS:
            recs = json.loads(json.dumps(good))
            recs[i][name] = _edit(recs[i][name])
            _write(log, recs)
            problems = log.check().problems
            assert problems and problems[0].seq in (i + 1, i, i + 8), (i, name, problems)
    _write(log, good)
    assert not log.check().problems


@pytest.mark.parametrize("name", FIELDS)
def test_editing_a_field_is_named_by_the_command(tmp_path, name):
    log = _log(tmp_path, n=4)
    recs = log.records()
    recs[1][name] = _edit(recs[1][name])
    _write(log, recs)
    r, out = _verify(tmp_path)
    assert r.returncode == TAMPERED, r.stdout + r.stderr
    assert out["first_problem"]["seq"] in (2, 1, 9) and "not intact" in r.stderr
    if name in ("data", "sig"):
        human = erpctl("evidence", "verify", "--data-dir", tmp_path)
        assert human.returncode == TAMPERED and "first bad record: 2 (altered)" in human.stdout


def test_reordering_and_removing_a_record_are_named(tmp_path):
    log = _log(tmp_path, n=4)
    good = log.records()
    _write(log, [good[0], good[2], good[1], good[3]])
    r, out = _verify(tmp_path)
    assert r.returncode == TAMPERED and out["first_problem"]["kind"] == "reordered" and out["first_problem"]["seq"] == 2
    _write(log, [good[0], good[2], good[3]])
    r, out = _verify(tmp_path)
    assert r.returncode == TAMPERED and out["first_problem"]["kind"] == "removed" and out["first_problem"]["seq"] == 3


def test_an_unsigned_record_after_signed_ones_is_named(tmp_path):
    log = _log(tmp_path, n=3)
    recs = log.records()
    del recs[1]["sig"], recs[1]["key_id"]
    recs[1]["hash"] = record_hash(recs[1])
    _write(log, recs)
    r, out = _verify(tmp_path)
    assert r.returncode == TAMPERED and out["first_problem"]["seq"] == 2


def test_an_unsigned_legacy_log_verifies_as_unsigned_up_to_record_n(tmp_path):
    log = EvidenceLog(tmp_path)
    legacy = _rechain([{"seq": i, "at": "2025-01-0%dT00:00:00+00:00" % i, "kind": "backup.create", "outcome": "ok",
                        "actor": "ops", "host": "h", "data": {"backup": f"b{i}"}} for i in (1, 2, 3)], None)
    _write(log, legacy, head=True)
    human = ok("evidence", "verify", "--data-dir", tmp_path)
    assert "unsigned up to record 3" in human.stdout
    _log(tmp_path, n=2)  # the log goes on, signed
    r, out = _verify(tmp_path)
    assert r.returncode == 0 and out["unsigned_through"] == 3 and out["signed"] == 2
    assert "unsigned up to record 3" in ok("evidence", "verify", "--data-dir", tmp_path).stdout


# ---- the public key for auditors ----------------------------------------------------------------

def test_an_auditor_verifies_a_copy_with_the_exported_public_key(tmp_path):
    data = tmp_path / "data"
    log = _log(data, n=3)
    ok("evidence", "public-key", "--data-dir", data, "--out", tmp_path / "auditor.pem")
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    r, out = _verify(copy, "--public-key", tmp_path / "auditor.pem")
    assert r.returncode == 0 and out["signed"] == 3, r.stdout + r.stderr

    # the whole chain rewritten with another key, evidence.pub replaced: only the auditor's key tells
    forger = Ed25519PrivateKey.generate()
    recs = log.records()
    recs[1]["outcome"] = "failed"
    _write(EvidenceLog(copy), _rechain(recs, forger), head=True)
    (copy / "evidence.pub").write_bytes(evidence_keys.public_pem(forger.public_key()))
    assert _verify(copy)[0].returncode == 0  # consistent in itself
    r, out = _verify(copy, "--public-key", tmp_path / "auditor.pem")
    assert r.returncode == TAMPERED and out["first_problem"]["kind"] == "unknown-key"
    assert out["first_problem"]["seq"] == 1

    (tmp_path / "empty.pem").write_text("")
    assert erpctl("evidence", "verify", "--data-dir", copy, "--public-key", tmp_path / "empty.pem").returncode \
        == KEY_REFUSED


# ---- attested files ----------------------------------------------------------------------------

def test_changing_one_byte_of_an_attested_file_is_detected(tmp_path):
    log = _log(tmp_path / "data", n=1)
    report = tmp_path / "drill-report.html"
    report.write_text("<h1>Drill passed</h1><p>RTO 41 s</p>")
    rec = attest_file(log, "drill.report", report, {"drill": "d1"})
    out = json.loads(ok("--json", "evidence", "check-file", report, "--data-dir", tmp_path / "data").stdout)
    assert out["ok"] and out["match"]["seq"] == rec["seq"] == 2
    body = bytearray(report.read_bytes())
    body[25] ^= 1
    report.write_bytes(bytes(body))
    r = erpctl("evidence", "check-file", report, "--data-dir", tmp_path / "data")
    assert r.returncode == UNATTESTED, r.stdout + r.stderr
    assert "record 2 (drill.report" in r.stdout and "changed since" in r.stdout


# ---- anchors: backup manifests and the anchor store -------------------------------------------

@pytest.fixture(scope="module")
def anchored(tmp_path_factory, sqlite_template):
    """An installation with 6 records, a backup whose manifest anchors the first ones, and an anchor
    store holding every head."""
    root = tmp_path_factory.mktemp("anchored")
    data, store = root / "data", root / "anchors"
    data.mkdir()
    shutil.copy(sqlite_template, data / "erp.sqlite3")
    env = {**PASS, "ERPCTL_EVIDENCE_ANCHOR": str(store)}
    _log(data, env, n=3)
    ok("backup", "init", "--data-dir", data, **env)
    ok("backup", "create", "--data-dir", data, **env)
    _log(data, env, n=2)
    saved = {name: (data / name).read_bytes() for name in FILES}
    return {"data": data, "store": store, "env": env, "saved": saved, "log": EvidenceLog(data)}


@pytest.fixture
def golden(anchored):
    """The anchored installation, its evidence files put back after each test."""
    yield anchored
    for name, body in anchored["saved"].items():
        (anchored["data"] / name).write_bytes(body)


def test_anchors_agree_with_an_intact_log(golden):
    r, out = _verify(golden["data"], "--anchors", **golden["env"])
    assert r.returncode == 0, r.stdout + r.stderr
    n = out["records"]
    assert out["anchors"]["vouched_through"] == n and out["anchors"]["count"] >= n
    human = ok("evidence", "verify", "--anchors", "--data-dir", golden["data"], **golden["env"]).stdout
    assert "1 in the backup manifests" in human and f"vouch for the log up to record {n}" in human


@pytest.mark.parametrize("store", [True, False], ids=["anchor-store", "backup-manifest"])
@pytest.mark.parametrize("how", ["truncated", "deleted", "rewritten", "rewritten-unsigned"])
def test_what_only_an_anchor_can_tell_is_named_by_it(golden, how, store):
    log, data = golden["log"], golden["data"]
    if store:  # the anchor store alone: no backup repository
        env = {**golden["env"], "ERPCTL_BACKUP_REPO": str(golden["store"].parent / "no-repository")}
    else:  # the backup manifests alone: no anchor store
        env = {**golden["env"], "ERPCTL_EVIDENCE_ANCHOR": ""}
    recs = log.records()
    if how == "truncated":  # the newest records cut off and the head moved back with them
        _write(log, recs[:2], head=True)
    elif how == "deleted":
        for name in FILES:
            (data / name).unlink()
    else:  # every hash (and signature, with a key of one's own) recomputed after an edit
        recs[0]["outcome"] = "failed"
        forger = Ed25519PrivateKey.generate() if how == "rewritten" else None
        _write(log, _rechain(recs, forger), head=True)
        if forger is not None:
            (data / "evidence.pub").write_bytes(evidence_keys.public_pem(forger.public_key()))
    plain, _ = _verify(data)
    assert plain.returncode == 0  # the log alone looks fine
    r, out = _verify(data, "--anchors", **env)
    assert r.returncode == TAMPERED, r.stdout + r.stderr
    first = out["first_problem"]
    assert first["kind"] == "anchor"
    assert ("anchor store" if store else "backup ") in first["detail"]
    if how == "deleted":
        assert "the log is empty or deleted" in first["detail"]
        human = erpctl("evidence", "verify", "--anchors", "--data-dir", data, **env)
        assert human.returncode == TAMPERED and "(anchor)" in human.stdout
        assert "no evidence recorded yet" not in human.stdout


def test_the_anchor_store_is_append_only(golden):
    objects = sorted(p.name for p in golden["store"].rglob("*.json"))
    assert len(objects) >= len(golden["log"].records())
    before = {p: p.read_bytes() for p in golden["store"].rglob("*.json")}
    _log(golden["data"], golden["env"], n=1)
    after = {p: p.read_bytes() for p in golden["store"].rglob("*.json")}
    assert all(after[p] == body for p, body in before.items()) and len(after) == len(before) + 1
    golden["saved"].update({name: (golden["data"] / name).read_bytes() for name in FILES})


# ---- the audit report ----------------------------------------------------------------------------

def test_audit_report_over_a_period(tmp_path):
    log = _log(tmp_path, n=0)
    log.append("backup.verify", {"backup": "b1", "level": 3}, outcome="ok")
    log.append("backup.verify", {"backup": "b2", "level": 3, "error": "chunk missing"}, outcome="failed")
    log.append("backup.restore_test", {"backup": "b1"}, outcome="ok")
    log.append("upgrade.apply", {"id": "u1", "to_version": "2.0"}, outcome="ok")
    log.append("runbook.end", {"runbook": "erp-down", "run": "r1"}, outcome="recovered")
    log.append("drill.end", {"drill": "d1", "scenario": "erp-killed"}, outcome="failed")
    out = json.loads(ok("--json", "audit", "report", "--since", "2000-01-01", "--data-dir", tmp_path).stdout)
    assert out["chain"]["ok"] and out["records_in_period"] == 6
    cats = out["categories"]
    assert (cats["backup_verification"]["count"], cats["backup_verification"]["failed"]) == (2, 1)
    assert cats["restore_test"]["ok"] == 1 and cats["upgrade"]["count"] == 1 and cats["runbook_run"]["ok"] == 1
    assert cats["drill"]["failures"][0]["what"] == {"drill": "d1", "scenario": "erp-killed"}
    assert cats["backup_verification"]["latest"]["seq"] == 2
    human = ok("audit", "report", "--since", "2000-01-01", "--data-dir", tmp_path).stdout
    assert human.startswith("evidence log: intact, 6 record(s), 6 signed")
    assert "failures (2):" in human and "drill.end" in human
    empty = json.loads(ok("--json", "audit", "report", "--since", "2000-01-01", "--until", "2000-12-31",
                          "--data-dir", tmp_path).stdout)
    assert empty["records_in_period"] == 0 and empty["categories"]["backup_verification"]["count"] == 0
    recs = log.records()
    recs[2]["outcome"] = "failed"
    _write(log, recs)
    r = erpctl("audit", "report", "--since", "2000-01-01", "--data-dir", tmp_path)
    assert r.returncode == TAMPERED and r.stdout.startswith("evidence log: NOT INTACT")
