"""The repository set in erpctl.toml ([backup] repo, as controlplane/backup/schedule.py documents) or
backup.json is the one `erpctl backup list|create`, the scheduled backup job, `erpctl status` and the
upgrade's pre-upgrade backup all use; --repo and ERPCTL_BACKUP_REPO come first."""

from __future__ import annotations

import json

import pytest

from controlplane import scheduler
from controlplane.backup.repository import open_repository
from controlplane.installation import Installation
from controlplane.upgrade.run import Run, UpgradeOptions
from controlplane.upgrade.run import open_repo as upgrade_repo
from tests.controlplane.cli_helpers import erpctl, ok_json

from .conftest import PASSPHRASE


@pytest.fixture(params=["toml", "backup.json"])
def configured(request, seeded_target, passphrase, tmp_path):
    """A data directory whose repository is configured (not the default), with one backup made by the CLI."""
    url = f"file://{tmp_path / 'configured-repo'}"
    d = seeded_target.data_dir
    if request.param == "toml":
        (d / "erpctl.toml").write_text(f'[backup]\nrepo = "{url}"\n')
    else:
        (d / "backup.json").write_text(json.dumps({"repo": url}))
    init = ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", d)
    assert init["repository"] == url
    created = ok_json("backup", "create", "--data-dir", d)
    return seeded_target, url, created["id"]


def test_backup_list_and_create_use_the_configured_repository(configured, tmp_path):
    target, url, backup_id = configured
    listed = ok_json("backup", "list", "--data-dir", target.data_dir)
    assert listed["repository"] == url and [b["id"] for b in listed["backups"]] == [backup_id]
    assert not (target.data_dir / "backups").exists()

    other = f"file://{tmp_path / 'other'}"
    by_env = erpctl("--json", "backup", "list", "--data-dir", target.data_dir, ERPCTL_BACKUP_REPO=other)
    assert by_env.returncode == 27 and other[len("file://"):] in by_env.stderr
    by_flag = ok_json("backup", "list", "--data-dir", target.data_dir, "--repo", url, ERPCTL_BACKUP_REPO=other)
    assert by_flag["repository"] == url


def test_the_scheduled_backup_job_uses_the_configured_repository(configured):
    target, url, backup_id = configured
    inst = Installation.open(target.data_dir)
    context = scheduler.JobContext(inst, "http://127.0.0.1:9", dict(inst.toml), dict(inst.environ))
    scheduler.Scheduler(context, providers=["controlplane.backup.schedule"]).run_now("backup.create")
    manifests = open_repository(url, passphrase=PASSPHRASE).list_manifests()
    assert len(manifests) == 2 and backup_id in [m.id for m in manifests]


def test_status_shows_the_configured_repository(configured):
    target, url, _ = configured
    r = erpctl("--json", "status", "--data-dir", target.data_dir, "--erp-url", "http://127.0.0.1:9", timeout=60)
    assert r.returncode == 17  # no ERP there: critical, and the picture is still printed
    report = json.loads(r.stdout)
    assert report["backup"]["repository"] == url
    assert report["backup"]["last_success_at"] is not None  # the CLI's backup, recorded


def test_the_pre_upgrade_backup_uses_the_configured_repository(configured):
    target, url, backup_id = configured
    run = Run(UpgradeOptions(target=Installation.open(target.data_dir)), {})
    try:
        repo = upgrade_repo(run)
        assert repo.url == url and [m.id for m in repo.list_manifests()] == [backup_id]
    finally:
        run.close()
