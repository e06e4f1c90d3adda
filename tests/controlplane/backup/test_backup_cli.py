"""`erpctl backup init|create|list|show|prune` as a user runs them (the installed console script)."""

from __future__ import annotations

import json

from controlplane import layout, results
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import erpctl, ok, ok_json

from .conftest import scatter_update


def _dd(target):
    return ["--data-dir", str(target.data_dir)]


def test_init_create_list_show_prune(seeded_target, passphrase, tmp_path):
    dd = _dd(seeded_target)
    init = ok_json("backup", "init", "--kdf-memory", "8192", *dd)
    assert init["created"] and init["repository"] == f"file://{seeded_target.data_dir / 'backups'}"
    assert init["key_slots"] == ["passphrase"]
    again = erpctl("--json", "backup", "init", "--kdf-memory", "8192", *dd)
    assert again.returncode == 5 and "already exists" in json.loads(again.stderr.splitlines()[-1])["error"]["detail"]

    first = ok_json("backup", "create", *dd)
    # the invariants are verification L3's, on the restored copy: not run at capture unless asked
    assert first["engine"] == "sqlite" and first["invariants_ok"] is None and first["bytes_added"] > 0
    scatter_update(seeded_target, 0.01)
    second = ok_json("backup", "create", *dd)
    assert second["bytes_added"] < first["bytes_added"] * 0.15

    listed = ok_json("backup", "list", *dd)
    assert [b["id"] for b in listed["backups"]] == [first["id"], second["id"]]
    human = ok("backup", "list", *dd).stdout
    assert first["id"][:8] in human and "not checked" in human and "2 backup(s)" in human

    shown = ok_json("backup", "show", first["id"][:8], *dd)
    assert shown["id"] == first["id"] and shown["tables"]["sales_orders"]["rows"] > 0 and "chunks" not in shown
    with_chunks = ok_json("backup", "show", "latest", "--chunks", *dd)
    assert with_chunks["id"] == second["id"] and len(with_chunks["chunks"]) == with_chunks["chunk_count"]
    text = ok("backup", "show", "latest", *dd).stdout
    assert "invariants: not checked" in text and "checksums   sqlite-pages-v1" in text and "sales_orders" in text
    assert "snapshot    SQLite online-backup copy, " in text  # a small database: no sealing processes, a copy

    dry = ok_json("backup", "prune", "--keep-last", "1", "--dry-run", *dd)
    assert dry["dry_run"] and dry["forgotten"] == [first["id"]]
    assert len(ok_json("backup", "list", *dd)["backups"]) == 2
    pruned = ok_json("backup", "prune", "--keep-last", "1", *dd)
    assert pruned["kept"] == [second["id"]] and pruned["forgotten"] == [first["id"]]
    assert [b["id"] for b in ok_json("backup", "list", *dd)["backups"]] == [second["id"]]

    kinds = [r["kind"] for r in EvidenceLog(seeded_target.data_dir).records()]
    assert kinds == ["backup.create", "backup.create", "backup.prune"]
    assert EvidenceLog(seeded_target.data_dir).verify()[1] == []
    latest = results.read(seeded_target.data_dir)
    assert latest["backup.create"].value("backup_id") == second["id"] and latest["backup.prune"].ok


def test_errors_have_their_exit_codes(seeded_target, passphrase, tmp_path):
    dd = _dd(seeded_target)
    missing = erpctl("backup", "list", "--repo", str(tmp_path / "nowhere"), *dd)
    assert missing.returncode == 27 and "no backup repository" in missing.stderr and "fix:" in missing.stderr
    ok("backup", "init", "--kdf-memory", "8192", *dd)
    ok("backup", "create", *dd)
    wrong = erpctl("--json", "backup", "create", *dd, ERPCTL_BACKUP_PASSPHRASE="nope")
    assert wrong.returncode == 21
    err = json.loads(wrong.stderr.splitlines()[-1])["error"]
    assert err["title"] == "Wrong backup key" and "nothing was changed" in err["detail"] and err["fix"]
    nokey = erpctl("backup", "list", *dd, ERPCTL_BACKUP_PASSPHRASE="")
    assert nokey.returncode == 21 and "no key was given" in nokey.stderr
    notfound = erpctl("backup", "show", "ffffffffffff", *dd)
    assert notfound.returncode == 25 and "no backup" in notfound.stderr
    nothing = erpctl("backup", "prune", *dd)
    assert nothing.returncode == 2 and "would keep no backup" in nothing.stderr and "--keep-daily" in nothing.stderr
    bad_url = erpctl("backup", "list", "--repo", "ftp://x/y", *dd)
    assert bad_url.returncode == 22 and "unsupported repository URL" in bad_url.stderr


def test_prune_without_options_applies_the_installations_retention(seeded_target, passphrase):
    """Without --keep-* options prune applies [backup.retention] of erpctl.toml (what the scheduled
    backup.prune applies), never 'keep nothing'; a policy that is not one is refused, nothing forgotten."""
    dd = _dd(seeded_target)
    ok("backup", "init", "--kdf-memory", "8192", *dd)
    made = [ok_json("backup", "create", *dd)["id"] for _ in range(3)]
    config = layout.path(seeded_target.data_dir, "config")
    config.write_text("[backup.retention]\nkeep_lats = 2\n")
    bad = erpctl("backup", "prune", *dd)
    assert bad.returncode == 2 and "keep_lats" in bad.stderr and "keep_last" in bad.stderr
    config.write_text("[backup.retention]\nkeep_last = 0\n")
    assert "would keep no backup" in erpctl("backup", "prune", *dd).stderr
    assert len(ok_json("backup", "list", *dd)["backups"]) == 3
    config.write_text("[backup.retention]\nkeep_last = 2\n")
    pruned = ok_json("backup", "prune", *dd)
    assert pruned["policy_source"] == "erpctl.toml [backup.retention]" and pruned["policy"]["keep_last"] == 2
    assert pruned["forgotten"] == [made[0]] and pruned["kept"] == made[:0:-1]
    assert "policy (erpctl.toml [backup.retention]): keep_last 2" in ok("backup", "prune", "--dry-run", *dd).stdout
    explicit = ok_json("backup", "prune", "--keep-last", "1", *dd)  # options come first
    assert explicit["policy_source"] == "options" and explicit["kept"] == [made[2]]


def test_key_file_and_env_repo(seeded_target, tmp_path):
    dd = _dd(seeded_target)
    key = tmp_path / "repo.key"
    repo = f"file://{tmp_path / 'elsewhere'}"
    init = ok_json("backup", "init", "--key-file", str(key), "--repo", repo, *dd, ERPCTL_BACKUP_PASSPHRASE="")
    assert init["key_slots"] == ["key_file"] and key.exists()
    made = ok_json("backup", "create", *dd, ERPCTL_BACKUP_REPO=repo, ERPCTL_BACKUP_KEY_FILE=str(key))
    assert made["repository"] == repo
    assert not (seeded_target.data_dir / "backups").exists()


def test_s3_through_the_cli(moto_s3, seeded_target, passphrase):
    dd = _dd(seeded_target)
    ok("backup", "init", "--kdf-memory", "8192", "--repo", moto_s3["url"], *dd)
    made = ok_json("backup", "create", "--repo", moto_s3["url"], *dd)
    assert made["repository"] == moto_s3["url"]
    assert ok_json("backup", "list", "--repo", moto_s3["url"], *dd)["backups"][0]["id"] == made["id"]


def test_backup_of_a_database_that_breaks_an_invariant(seeded_target, passphrase):
    """The backup is taken (it is what there is); with --check-invariants its manifest records the
    violation (without, it says they were not checked: L3 finds it on the restored copy)."""
    import sqlite3

    c = sqlite3.connect(seeded_target.sqlite_path)
    c.execute("UPDATE stock_levels SET quantity = quantity + 5 WHERE rowid = (SELECT min(rowid) FROM stock_levels)")
    c.commit()
    c.close()
    dd = _dd(seeded_target)
    ok("backup", "init", "--kdf-memory", "8192", *dd)
    made = ok_json("backup", "create", "--check-invariants", *dd)
    assert made["invariants_ok"] is False and made["invariants"][0]["check"] == "on_hand_matches_moves"
    assert "warning: 1 invariant violation" in ok("backup", "create", "--check-invariants", *dd).stdout
    plain = ok("backup", "create", *dd).stdout
    assert "invariants not checked at capture" in plain and "warning" not in plain
    listed = ok("backup", "list", *dd).stdout
    assert "1 violation(s)" in listed and "not checked" in listed
