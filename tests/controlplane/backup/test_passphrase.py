"""A new backup repository refuses a weak passphrase, with the fix; a strong one is taken."""

from __future__ import annotations

import json

from tests.controlplane.cli_helpers import erpctl, ok_json


def test_a_weak_passphrase_is_refused_for_a_new_repository(tmp_path):
    data, repo = tmp_path / "data", f"file://{tmp_path / 'repo'}"
    for weak in ("a", "hunter2", "aaaaaaaaaaaaaaaa"):
        r = erpctl("--json", "backup", "init", "--kdf-memory", "8192", "--repo", repo, "--data-dir", data,
                   ERPCTL_BACKUP_PASSPHRASE=weak)
        assert r.returncode == 2, r.stderr
        problem = json.loads(r.stderr.splitlines()[-1])["error"]
        assert "too weak" in problem["detail"] and "key file" in problem["fix"]
        assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
    made = ok_json("backup", "init", "--kdf-memory", "8192", "--repo", repo, "--data-dir", data,
                   ERPCTL_BACKUP_PASSPHRASE="four random words here")
    assert made["key_slots"] == ["passphrase"]
