"""The data directory is its owner's alone; secret files others may read are refused."""

from __future__ import annotations

import json
import os
import stat

from tests.controlplane.cli_helpers import erpctl, ok


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_migrate_makes_an_open_data_directory_private(tmp_path):
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    (d / "runbook-runs").mkdir(mode=0o755)
    (d / "runbook-runs" / "r.json").write_text("{}")
    (d / "hook.sh").write_text("#!/bin/sh\n")
    os.chmod(d / "runbook-runs" / "r.json", 0o644)
    os.chmod(d / "hook.sh", 0o755)
    ok("erp", "migrate", "--data-dir", d)
    assert mode(d) == 0o700 and mode(d / "erp.sqlite3") == 0o600
    assert mode(d / "runbook-runs") == 0o700 and mode(d / "runbook-runs" / "r.json") == 0o600
    assert mode(d / "hook.sh") == 0o700


def test_secret_files_others_may_read_are_refused_with_the_fix(tmp_path):
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    backup_json = d / "backup.json"
    backup_json.write_text(json.dumps({"s3": {"access_key_id": "id", "secret_access_key": "s3-secret"}}))
    os.chmod(backup_json, 0o644)
    r = erpctl("settings", "--data-dir", d)
    assert r.returncode == 14 and f"chmod 600 {backup_json}" in r.stderr, r.stderr
    os.chmod(backup_json, 0o600)
    ok("settings", "--data-dir", d)

    key = tmp_path / "backup.key"
    key.write_text("k" * 64)
    os.chmod(key, 0o640)
    r = erpctl("backup", "init", "--key-file", key, "--data-dir", d)
    assert r.returncode == 14 and f"chmod 600 {key}" in r.stderr, r.stderr
