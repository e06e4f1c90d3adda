"""Signed releases: `erpctl release install` checks WHEEL.sig against the trusted keys before any of the
wheel's code can run; unsigned, untrusted and altered wheels are refused unless --allow-unsigned."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from controlplane.errors import ReleaseUntrusted
from controlplane.release import signing
from tests.controlplane.cli_helpers import erpctl, ok
from tests.controlplane.release_helpers import SIGNING_KEY, WHEEL_1_0, copy_signed, sign_for_tests


def _with_payload(src: Path, dest: Path, marker: Path) -> Path:
    """The 1.0 wheel with code that writes `marker` when erp_core is imported and when Python starts (.pth)."""
    payload = f"open({str(marker)!r}, 'a').write('ran\\n')\n"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "erp_core/__init__.py":
                data = payload.encode() + data
            zout.writestr(item, data)
        zout.writestr("zz_payload.pth", f"import os; {payload}")
    return dest


def _installed(data: Path) -> list[str]:
    root = data / "releases"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def test_unsigned_untrusted_and_tampered_wheels_are_refused_before_any_code_runs(tmp_path):
    data, marker = tmp_path / "data", tmp_path / "payload-ran"
    (tmp_path / "unsigned").mkdir()
    unsigned = _with_payload(WHEEL_1_0, tmp_path / "unsigned" / WHEEL_1_0.name, marker)
    r = erpctl("release", "install", unsigned, "--data-dir", data)
    assert r.returncode == 32, r.stderr
    assert "is not signed" in r.stderr and "erpctl release sign" in r.stderr and "--allow-unsigned" in r.stderr

    # Signed, then altered: the signature names the bytes that were signed.
    (tmp_path / "tampered").mkdir()
    tampered = copy_signed(WHEEL_1_0, tmp_path / "tampered")
    _with_payload(WHEEL_1_0, tampered, marker)
    r = erpctl("--json", "release", "install", tampered, "--data-dir", data)
    assert r.returncode == 32, r.stderr
    problem = json.loads(r.stderr.splitlines()[-1])["error"]
    assert "does not match its signature" in problem["detail"] and problem["fix"]

    # Signed by a key the installation does not trust.
    (tmp_path / "stranger").mkdir()
    ok("release", "keygen", tmp_path / "stranger" / "their.key")
    ok("release", "sign", unsigned, "--key", tmp_path / "stranger" / "their.key")
    r = erpctl("release", "install", unsigned, "--data-dir", data)
    assert r.returncode == 32 and "does not trust" in r.stderr, r.stderr

    assert not marker.exists(), "the wheel's code ran"
    assert _installed(data) == []

    # Trusting that key (a directory of public keys in the data directory, the default) lets it in: the
    # payload is real, and runs once the wheel is trusted.
    (data / "release-keys").mkdir(parents=True)
    shutil.copy(tmp_path / "stranger" / "their.key.pub", data / "release-keys" / "builder.pub")
    out = json.loads(ok("--json", "release", "install", unsigned, "--data-dir", data,
                        ERPCTL_RELEASE_TRUSTED_KEYS="").stdout)
    assert out["installed"] and _installed(data) == ["1.0.0"]
    assert marker.exists()


def test_allow_unsigned_installs_and_is_recorded_in_the_evidence_log(tmp_path):
    data = tmp_path / "data"
    (tmp_path / "w").mkdir()
    wheel = shutil.copy(WHEEL_1_0, tmp_path / "w" / WHEEL_1_0.name)
    ok("release", "install", wheel, "--data-dir", data, "--allow-unsigned")
    records = [json.loads(line) for line in (data / "evidence.jsonl").read_text().splitlines()]
    assert [rec["kind"] for rec in records] == ["release_unsigned_allowed", "release_install"]
    assert "is not signed" in records[0]["data"]["problem"]
    assert records[1]["data"]["signature"]["signed"] is False


def test_sign_writes_a_signature_that_the_trusted_key_verifies(tmp_path):
    (tmp_path / "w").mkdir()
    wheel = Path(shutil.copy(WHEEL_1_0, tmp_path / "w" / WHEEL_1_0.name))
    signed = json.loads(ok("--json", "release", "sign", wheel, "--key", SIGNING_KEY).stdout)
    assert Path(signed["signature"]) == Path(f"{wheel}.sig")
    assert Path(f"{wheel}.sig").read_text() == Path(f"{sign_for_tests(wheel)}.sig").read_text()  # deterministic
    checked = signing.verify(wheel, Path(f"{SIGNING_KEY}.pub"))
    assert checked.signed and checked.key_id == signed["key_id"] and checked.sha256 == signed["sha256"]
    renamed = Path(shutil.copy(wheel, tmp_path / "w" / "erp_controlplane-9.9.9-py3-none-any.whl"))
    shutil.copy(f"{wheel}.sig", f"{renamed}.sig")  # the signature names the file it signed
    with pytest.raises(ReleaseUntrusted, match="does not match its signature"):
        signing.verify(renamed, Path(f"{SIGNING_KEY}.pub"))
