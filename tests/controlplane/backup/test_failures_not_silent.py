"""Scheduled jobs that fail are not silent: a scheduled backup with the wrong key shows in `erpctl
status` as failed with its real error and in the job metrics of the ops port (ScheduledJobFailing);
a probe whose result cannot be written (a full disk, for real) is a failed run, not a stale "ok"."""

from __future__ import annotations

import json

import pytest

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from controlplane import results, scheduler
from controlplane.config import Target
from controlplane.evidence import EvidenceLog
from controlplane.installation import Installation
from controlplane.monitoring import exporter
from tests.controlplane.cli_helpers import erpctl, ok_json

from .test_backup_faults import _fill, small_tmpfs  # noqa: F401 - the fixture

NO_ERP = "http://127.0.0.1:9"


def job_metrics(data_dir, job_ids, unrecorded=None) -> dict:
    """{(metric sample name, job or probe label): value} as the ops port's /metrics serves them."""
    text = generate_latest(exporter.registry(data_dir, job_ids, unrecorded=unrecorded)).decode()
    return {(s.name, s.labels.get("job") or s.labels.get("probe")): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith(("erpctl_job_", "erpctl_probe_success"))}


def run_backup_job(target, **environ):
    inst = Installation.open(target.data_dir)
    context = scheduler.JobContext(inst, NO_ERP, dict(inst.toml), {**inst.environ, **environ})
    scheduler.Scheduler(context, providers=["controlplane.backup.schedule"]).run_now("backup.create")


def status(target) -> dict:
    r = erpctl("--json", "status", "--data-dir", target.data_dir, "--erp-url", NO_ERP, timeout=60)
    assert r.returncode == 17, r.stderr  # no ERP there: critical; the picture is printed all the same
    return json.loads(r.stdout)


def test_a_scheduled_backup_with_the_wrong_key_shows_failed_with_its_error(seeded_target, passphrase):
    d = seeded_target.data_dir
    ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", d)
    ok_json("backup", "create", "--data-dir", d)  # an earlier good backup: its "ok" must not hide the failure
    run_backup_job(seeded_target, ERPCTL_BACKUP_PASSPHRASE="not the key")
    run_backup_job(seeded_target, ERPCTL_BACKUP_PASSPHRASE="not the key")

    report = status(seeded_target)
    latest = report["backup"]["latest"]
    assert latest["ok"] is False and "WrongKey" in latest["error"] and "passphrase" in latest["error"]
    failed = [a for a in report["attention"] if a["what"] == "backup failed"]
    assert failed and "the scheduled backup failed: WrongKey" in failed[0]["detail"]
    assert failed[0]["runbook_path"].endswith("BackupTooOld.md")
    job = report["jobs"]["backup.create"]
    assert job["ok"] is False and job["failures"] == 2 and "WrongKey" in job["error"]
    text = erpctl("status", "--data-dir", d, "--erp-url", NO_ERP, timeout=60).stdout
    assert "latest attempt FAILED" in text and "FAIL backup.create" in text and "WrongKey" in text

    m = job_metrics(d, ["backup.create"])
    assert m[("erpctl_job_failures_total", "backup.create")] == 2
    assert m[("erpctl_job_last_failure_timestamp_seconds", "backup.create")] > \
        m[("erpctl_job_last_success_timestamp_seconds", "backup.create")] == 0  # ScheduledJobFailing's condition

    run_backup_job(seeded_target)  # the key is put right: the next run clears it
    m = job_metrics(d, ["backup.create"])
    assert m[("erpctl_job_failures_total", "backup.create")] == 2
    assert m[("erpctl_job_last_success_timestamp_seconds", "backup.create")] > \
        m[("erpctl_job_last_failure_timestamp_seconds", "backup.create")] > 0
    report = status(seeded_target)
    assert report["backup"]["latest"]["ok"] and report["jobs"]["backup.create"]["ok"]
    assert not [a for a in report["attention"] if "backup" in a["what"] and "fail" in a["what"]]


@pytest.mark.parametrize("break_it", ["wrong passphrase", "repository unreadable"])
def test_a_manual_backup_that_cannot_open_its_repository_records_a_failed_result(seeded_target, passphrase,
                                                                                 break_it):
    d = seeded_target.data_dir
    ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", d)
    ok_json("backup", "create", "--data-dir", d)  # an earlier good backup: its "ok" must not hide the failure
    env, args = {}, []
    if break_it == "wrong passphrase":
        env["ERPCTL_BACKUP_PASSPHRASE"] = "not the key"
    else:  # a lost mount where the repository was: a file in its path (root reads any mode bits)
        (d / "not-a-directory").write_text("")
        args = ["--repo", f"file://{d / 'not-a-directory' / 'repo'}"]
    r = erpctl("--json", "backup", "create", *args, "--data-dir", d, **env)
    assert r.returncode not in (0, 70), r.stdout + r.stderr
    said = json.loads(r.stderr.strip().splitlines()[-1])["error"]["detail"]

    latest = results.read(d)["backup.create"]
    assert latest.ok is False and latest.value("error") == said, latest
    assert results.read(d)["backup.create.last_success"].ok
    rec = EvidenceLog(d).records()[-1]
    assert rec["kind"] == "backup.create" and rec["outcome"] == "failed" and rec["data"]["error"] == said
    report = status(seeded_target)
    assert report["backup"]["latest"]["ok"] is False
    assert [a for a in report["attention"] if a["what"] == "backup failed" and said[:40] in a["detail"]]
    assert erpctl("evidence", "verify", "--data-dir", d).returncode == 0


def test_a_probe_whose_result_cannot_be_written_is_a_failed_run(small_tmpfs):  # noqa: F811
    """The data directory's filesystem is full for real: the disk probe's result (and the scheduler's
    record of the run) cannot be written. The probe must not stay "ok" on the ops port."""
    d = small_tmpfs / "data"
    d.mkdir()
    context = scheduler.JobContext(Target(d, f"sqlite:///{d}/erp.sqlite3"), NO_ERP, {}, {})
    s = scheduler.Scheduler(context, providers=["controlplane.monitoring.jobs"])
    s.run_now("probe.disk_headroom")  # 6 MiB free is below the 1 GiB default: a failing probe, recorded
    assert results.read(d)["probe.disk_headroom"].ok is False
    results.record(d, "probe.disk_headroom", True, detail="an older ok")  # what a full disk would freeze
    before = results.read(d)
    filler = _fill(small_tmpfs, leave=0)
    s.run_now("probe.disk_headroom")
    s.run_now("probe.disk_headroom")
    assert results.read(d) == before  # nothing could be written
    lost = s.unrecorded()["probe.disk_headroom"]
    assert lost["failures"] == 2 and "could not be recorded" in lost["error"] and "No space left" in lost["error"]
    m = job_metrics(d, [p.job.id for p in s.planned], s.unrecorded)
    assert m[("erpctl_probe_success", "disk_headroom")] == 0  # not the stale "ok"
    assert m[("erpctl_job_failures_total", "probe.disk_headroom")] == 2
    assert m[("erpctl_job_last_failure_timestamp_seconds", "probe.disk_headroom")] > \
        m[("erpctl_job_last_success_timestamp_seconds", "probe.disk_headroom")]

    filler.unlink()  # space again: the next run is recorded, with the failures it could not write
    s.run_now("probe.disk_headroom")
    assert s.unrecorded() == {}
    job = results.read(d)["scheduler.probe.disk_headroom"]
    assert job.ok and job.value("failures") == 2 and "No space left" in job.value("last_error")


def test_maintenance_on_a_full_disk_exits_23_with_the_fix(seeded_target, small_tmpfs):  # noqa: F811
    """The ERP's SQLite database on a filesystem that is full for real."""
    d = small_tmpfs / "data"
    d.mkdir()
    (d / "erp.sqlite3").write_bytes(seeded_target.sqlite_path.read_bytes())
    filler = _fill(small_tmpfs, leave=0)
    r = erpctl("--json", "erp", "maintenance", "on", "--reason", "disk full", "--data-dir", d)
    assert r.returncode == 23, r.stderr[-2000:]
    error = json.loads(r.stderr.splitlines()[-1])["error"]
    assert error["title"] == "Disk full" and "disk is full" in error["detail"]
    assert "Free space" in error["fix"] and "nothing was changed" in error["fix"]
    filler.unlink()
    assert ok_json("erp", "maintenance", "status", "--data-dir", d)["enabled"] is False  # nothing half-done
    assert ok_json("erp", "maintenance", "on", "--data-dir", d)["enabled"] is True


def restore_test_metric(data_dir) -> float:
    text = generate_latest(exporter.registry(data_dir)).decode()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "erpctl_restore_test_last_success_timestamp_seconds")


def test_a_verification_through_l3_by_hand_is_a_restore_test(seeded_target, passphrase):
    d = seeded_target.data_dir
    ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", d)
    ok_json("backup", "create", "--data-dir", d)
    assert "restore test overdue" in [a["what"] for a in status(seeded_target)["attention"]]
    ok_json("backup", "verify", "--level", "2", "--data-dir", d)
    assert restore_test_metric(d) == 0  # L2 compares no content: not a restore test
    ok_json("backup", "verify", "--level", "3", "--data-dir", d)
    assert restore_test_metric(d) > 0  # RestoreTestOverdue's metric
    report = status(seeded_target)
    assert "restore test overdue" not in [a["what"] for a in report["attention"]]
    assert report["backup"]["restore_test"]["ok"] and report["backup"]["restore_test_last_success_at"]
    kinds = [json.loads(line)["kind"] for line in (d / "evidence.jsonl").read_text().splitlines() if line.strip()]
    assert kinds.count("backup.restore_test") == 1


def test_the_restore_test_overdue_runbook_as_written_clears_it(seeded_target, passphrase):
    """RestoreTestOverdue.md's blocks, in order, as written (the installation from the environment):
    its recover step records a restore test, so status and the alert's metric clear."""
    from tests.runbooks.harness import run_runbook

    d = seeded_target.data_dir
    ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", d)
    ok_json("backup", "create", "--data-dir", d)
    ran = run_runbook("RestoreTestOverdue", {"ERPCTL_DATA_DIR": str(d), "ERPCTL_ERP_URL": NO_ERP})
    said = ran.report()
    assert "restore test overdue" in ran.command("Confirm", "erpctl status").output, said
    assert "backup_restore_test_level      4" in ran.command("Confirm", "erpctl settings").output, said
    (recover,) = ran.ran("Recover")
    assert recover.command == "erpctl backup verify --level 4 latest" and recover.exit_code == 0, said
    assert ran.command("Check recovery", "erpctl evidence verify").exit_code == 0, said
    assert "restore test overdue" not in ran.command("Check recovery", "erpctl status").output, said
    assert restore_test_metric(d) > 0  # RestoreTestOverdue's metric


def test_erp_check_by_hand_records_its_violations(seeded_target):
    import sqlite3

    d = seeded_target.data_dir
    with sqlite3.connect(seeded_target.sqlite_path) as c:  # the on-hand cache edited behind the ERP's back
        c.execute("UPDATE stock_levels SET quantity = quantity + 7 WHERE rowid = (SELECT min(rowid) FROM stock_levels)")
    r = erpctl("erp", "check", "--data-dir", d)
    assert r.returncode == 13
    text = generate_latest(exporter.registry(d)).decode()
    assert "erpctl_invariant_violations 1.0" in text  # InvariantViolations fires without waiting for the schedule
    report = status(seeded_target)
    assert report["invariants"]["violations"] == 1
    assert [a for a in report["attention"] if a["what"] == "invariant violations" and a["level"] == "critical"]


def test_verify_latest_in_a_shared_repository_is_this_databases_own(seeded_target, passphrase, tmp_path):
    """Two databases back up into one repository; the other one's backup is the newer."""
    import shutil

    url = f"file://{tmp_path / 'shared'}"
    mine = seeded_target.data_dir
    other = tmp_path / "other"
    shutil.copytree(mine, other)
    ok_json("backup", "init", "--repo", url, "--kdf-memory", "8192", "--data-dir", mine)
    own = ok_json("backup", "create", "--repo", url, "--data-dir", mine)["id"]
    theirs = ok_json("backup", "create", "--repo", url, "--data-dir", other)["id"]

    r = ok_json("backup", "verify", "--level", "1", "--repo", url, "--data-dir", mine)
    assert [v["backup"] for v in r["backups"]] == [own] and r["backups"][0]["recorded"]
    assert ok_json("backup", "verify", "latest", "--level", "1", "--repo", url,
                   "--data-dir", other)["backups"][0]["backup"] == theirs
    both = ok_json("backup", "verify", "--all-latest", "--level", "1", "--repo", url, "--data-dir", mine)
    assert {v["backup"]: v["recorded"] for v in both["backups"]} == {own: True, theirs: False}
    records = [json.loads(line) for line in (mine / "evidence.jsonl").read_text().splitlines() if line.strip()]
    verified = {rec["data"]["backup"] for rec in records if rec["kind"] == "backup.verify"}
    assert verified == {own}  # never a record about the other database's backup
    placed = ok_json("backup", "restore", "latest", "--target", tmp_path / "inspect", "--repo", url, "--data-dir", mine)
    assert placed["backup"] == own  # restore's latest is this database's own too

    empty = tmp_path / "third"
    shutil.copytree(mine, empty)
    (empty / "erp.sqlite3").rename(empty / "moved.sqlite3")
    r = erpctl("--json", "backup", "verify", "--level", "1", "--repo", url, "--data-dir", empty,
               "--database-url", f"sqlite:///{empty / 'moved.sqlite3'}")
    assert r.returncode == 25, r.stderr  # no backup of this database: not another's "ok"
    assert "no backup of this database" in json.loads(r.stderr.splitlines()[-1])["error"]["detail"]


def test_the_installation_records_its_creation_once_for_the_alerts_grace(tmp_path):
    """The first erpctl up records it (Monitoring.prepare); an installation that already has results
    (older than this code) takes its oldest one, so its alerts get no new grace."""
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    fresh.mkdir()
    old.mkdir()
    created = results.ensure_created(fresh)
    assert results.ensure_created(fresh) == created  # never moved
    results.record(old, "backup.create", True)
    first = results.read(old)["backup.create"].at
    results.record(old, "probe.readyz", True)
    assert results.ensure_created(old) == first
    text = generate_latest(exporter.registry(old)).decode()
    assert [s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "erpctl_installation_created_timestamp_seconds"] == [pytest.approx(first)]


def test_verify_latest_of_a_postgresql_database_in_a_shared_repository(pg_seeded_target, seeded_sqlite_template,
                                                                       passphrase, tmp_path):
    """A PostgreSQL database and a SQLite one share a repository; the SQLite backup is the newer."""
    import shutil

    from .conftest import _write_field_key

    url = f"file://{tmp_path / 'shared'}"
    pg = ["--data-dir", pg_seeded_target.data_dir, "--database-url", pg_seeded_target.database_url]
    lite_dir = tmp_path / "lite"
    _write_field_key(lite_dir)
    shutil.copy(seeded_sqlite_template, lite_dir / "erp.sqlite3")
    ok_json("backup", "init", "--repo", url, "--kdf-memory", "8192", *pg)
    own = ok_json("backup", "create", "--repo", url, *pg)["id"]
    ok_json("backup", "create", "--repo", url, "--data-dir", lite_dir)
    r = ok_json("backup", "verify", "--level", "1", "--repo", url, *pg)
    assert [v["backup"] for v in r["backups"]] == [own] and r["backups"][0]["engine"] == "postgresql"
