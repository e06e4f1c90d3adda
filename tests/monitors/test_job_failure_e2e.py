"""End to end, all real: a scheduled backup that fails (the wrong key) under a real `erpctl up`
raises ScheduledJobFailing in a real Prometheus with the shipped rules, which Alertmanager routes
(a ticket) to the control plane's receiver, and `erpctl status` shows it beside the job's own error.
Then the runbooks of the backup alerts, run as written from an engineer's shell, show the job's
error and the running erpctl up's schedule, and take a backup with the installation's settings.

Timings of the test copy (tests/monitors/alerting.py): scrape and evaluation every second, the
alert's `for` 5 s; the backup job runs every 2 s.
"""

from __future__ import annotations

import json
import time

from tests.controlplane.cli_helpers import erpctl, ok_json
from tests.runbooks.harness import run_runbook

from .alerting import PAGE_BOUND, shipped_page_seconds, start_pipeline
from .conftest import Up


def test_a_failing_scheduled_backup_raises_scheduled_job_failing(tmp_path, monkeypatch):
    from controlplane.monitoring import alerts
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    data = tmp_path / "data"
    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", "the right passphrase")
    ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", data)
    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", "not the key")  # what erpctl up is started with
    monkeypatch.setenv("ERPCTL_SCHEDULE_BACKUP_CREATE", "2s")
    up = Up(data, tmp_path / "erpctl-up.log")
    t_start = time.monotonic()
    token_file = data / WEBHOOK_TOKEN_FILE
    pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{up.erp_port}", "erpctl": f"127.0.0.1:{up.ops_port}"},
                          up.ops_port, token_file, shortened=("ScheduledJobFailing",))
    try:
        def at_the_control_plane():
            return [a for a in alerts.active(data) if a["alertname"] == "ScheduledJobFailing"]

        seen = pipe.wait("ScheduledJobFailing at the control plane's receiver", at_the_control_plane, PAGE_BOUND + 60)
        firing = pipe.query('ALERTS{alertname="ScheduledJobFailing", alertstate="firing"}')
        assert {s["metric"]["exported_job"] for s in firing} == {"backup.create"}
        print(f"\nScheduledJobFailing: {time.monotonic() - t_start:.1f} s from erpctl up's start (first failed run "
              f"within 2 s) to the control plane's receiver ({seen:.1f} s after the pipeline was ready); with the "
              f"shipped intervals at most {shipped_page_seconds('ScheduledJobFailing') + 20:.0f} s after the failed "
              f"run (for 5m, scrape and evaluation 15 s, the ticket route's group_wait 30 s)")
        r = erpctl("--json", "status", "--data-dir", data, "--erp-url", up.erp_url, timeout=60)
        report = json.loads(r.stdout)
        whats = {a["what"]: a for a in report["attention"]}
        assert "alert ScheduledJobFailing" in whats
        assert "WrongKey" in whats["backup failed"]["detail"]
        assert report["jobs"]["backup.create"]["ok"] is False and report["jobs"]["backup.create"]["failures"] >= 1
        # The engineer's shell: the right passphrase, none of erpctl up's schedule variables.
        monkeypatch.delenv("ERPCTL_SCHEDULE_BACKUP_CREATE")
        _the_backup_runbooks_as_written(data)
    finally:
        pipe.stop()
        up.process.stop()


def _the_backup_runbooks_as_written(data) -> None:
    where = {"ERPCTL_DATA_DIR": str(data), "ERPCTL_BACKUP_PASSPHRASE": "the right passphrase"}
    missing = run_runbook("BackupMissing", where)
    too_old = run_runbook("BackupTooOld", where)
    for ran in (missing, too_old):
        said = ran.report()
        assert "WrongKey" in ran.command("Confirm", "erpctl status").output, said
        assert ran.command("Confirm", "erpctl backup list").exit_code == 0, said
        settings = ran.command("Confirm", "erpctl settings").output
        assert "schedules (the running erpctl up" in settings, said
        assert "backup.create                  2s  (environment ERPCTL_SCHEDULE_BACKUP_CREATE)" in settings, said
        assert f"backup_repo                    file://{data}/backups  (the running 'erpctl up'" in settings, said
        recover = ran.ran("Recover")
        assert recover and all(r.exit_code == 0 for r in recover), said
        assert "erpctl backup create" in [r.command for r in recover], said
        assert "erpctl backup init" not in "\n".join(r.output for r in recover), said  # there is a repository
        assert ran.command("Check recovery", "erpctl backup verify --level 1 latest").exit_code == 0, said
        listed = ran.command("Check recovery", "erpctl backup list").output
        assert f"{1 + (ran is too_old)} backup(s)" in listed, said
    status = json.loads(erpctl("--json", "status", "--data-dir", data, timeout=60).stdout)
    assert status["backup"]["last_success_at"] and status["backup"]["age_seconds"] < 120
