"""`erpctl status` as a real process: its picture and its exit codes (0 fine, 16 warnings, 17 critical)."""

from __future__ import annotations

import json

from controlplane import layout, results
from controlplane.errors import EXIT_CODES
from controlplane.monitoring import alerts, probes
from tests.controlplane.cli_helpers import erpctl, free_ports

from .helpers import upgrade_in_progress
from .test_alerts import alert, notification

DISK_OK = {"ERPCTL_PROBE_DISK_MIN_FREE_BYTES": "1"}


def status(data_dir, *args, **env):
    r = erpctl("--json", "status", "--data-dir", data_dir, *args, timeout=60, **{**DISK_OK, **env})
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout), r


def healthy_results(data_dir):
    for name in probes.NAMES:
        results.record(data_dir, f"probe.{name}", True, duration=0.01, detail="fine")
    results.record(data_dir, "backup.create", True, bytes_added=100)
    for level in ("L1", "L2", "L3", "L4"):
        results.record(data_dir, f"backup.verify.{level}", True)
    results.record(data_dir, "backup.restore_test", True, duration=3.0)
    results.record(data_dir, "invariants", True, violations=0)


def whats(report):
    return {a["what"]: a for a in report["attention"]}


def test_everything_fine_exits_0(live_erp):
    healthy_results(live_erp.data_dir)
    rc, report, r = status(live_erp.data_dir, "--erp-url", live_erp.url)
    assert rc == 0, report["attention"]
    assert report["state"] == "ok" and report["attention"] == []
    assert report["erp"]["healthz"]["ok"] and report["erp"]["readyz"]["ready"]
    assert report["backup"]["bytes_added"] == 100 and report["backup"]["verifications"]["L4"]["ok"]
    assert report["probes"]["readyz"]["ok"] and report["invariants"]["violations"] == 0
    assert report["host"]["memory_total_bytes"] > 0 and report["host"]["data_dir_filesystem_free_bytes"] > 0
    assert 0 <= report["host"]["cpu_usage_ratio"] <= 1 and report["host"]["load_per_cpu"] >= 0
    assert r.stderr == ""

    human = erpctl("status", "--data-dir", live_erp.data_dir, "--erp-url", live_erp.url, **DISK_OK)
    assert human.returncode == 0
    assert "state: OK" in human.stdout and "readyz ready" in human.stdout and "disk_headroom" in human.stdout


def test_warnings_exit_16_with_runbooks(live_erp):
    healthy_results(live_erp.data_dir)
    results.record(live_erp.data_dir, "probe.business", False, duration=0.2, detail="login failed: 401")
    results.record(live_erp.data_dir, "backup.verify.L3", False, error="table sales_orders differs")
    alerts.record(live_erp.data_dir, notification(alert("BackupTooOld", severity="ticket")), evidence=False)
    alerts.record(live_erp.data_dir, notification(alert("LowStock", severity="info")), evidence=False)
    rc, report, r = status(live_erp.data_dir, "--erp-url", live_erp.url, "--no-recheck")  # as recorded
    assert rc == 16 and report["state"] == "warning"
    found = whats(report)
    assert set(found) == {"probe business failing", "backup verification L3 failed", "alert BackupTooOld"}
    assert found["probe business failing"]["runbook_url"] == "runbooks/ErpProbeFailing.md"
    assert found["alert BackupTooOld"]["runbook_url"].endswith("/runbooks/BackupTooOld.md")
    assert [a["alertname"] for a in report["alerts"]] == ["BackupTooOld", "LowStock"]  # info: shown, not flagged
    assert 16 in EXIT_CODES and 17 in EXIT_CODES
    assert json.loads(r.stderr)["exit_code"] == 16

    human = erpctl("status", "--data-dir", live_erp.data_dir, "--erp-url", live_erp.url, "--no-recheck", **DISK_OK)
    assert human.returncode == 16
    assert "[warning] probe business failing: login failed: 401" in human.stdout
    assert "runbooks/ErpProbeFailing.md" in human.stdout
    assert "need attention" in human.stderr


def test_no_backup_is_a_warning(live_erp):
    for name in probes.NAMES:
        results.record(live_erp.data_dir, f"probe.{name}", True)
    rc, report, _ = status(live_erp.data_dir, "--erp-url", live_erp.url)
    assert rc == 16 and set(whats(report)) == {"no backup"}
    assert whats(report)["no backup"]["runbook_url"] == "runbooks/BackupMissing.md"


def test_a_new_installation_has_8_days_for_its_first_restore_test(live_erp):
    """As RestoreTestOverdue: a backup without a restore test is overdue only 8 days after the installation
    was first served (results' installation.created), never on its first day."""
    d = live_erp.data_dir
    for name in probes.NAMES:
        results.record(d, f"probe.{name}", True)
    results.record(d, "backup.create", True, bytes_added=100)
    results.ensure_created(d)  # what the first `erpctl up` records
    rc, report, _ = status(d, "--erp-url", live_erp.url)
    assert rc == 0 and report["attention"] == [], report["attention"]

    path = layout.path(d, "results")
    data = json.loads(path.read_text())
    data["results"][results.CREATED]["at"] -= 9 * 86400  # created 9 days ago, still no restore test
    path.write_text(json.dumps(data))
    rc, report, _ = status(d, "--erp-url", live_erp.url)
    assert rc == 16 and set(whats(report)) == {"restore test overdue"}
    assert whats(report)["restore test overdue"]["runbook_url"] == "runbooks/RestoreTestOverdue.md"


def test_erp_down_is_critical(tmp_path):
    port, = free_ports(1)
    healthy_results(tmp_path)
    rc, report, _ = status(tmp_path, "--erp-url", f"http://127.0.0.1:{port}", "--timeout", "1")
    assert rc == 17 and report["state"] == "critical"
    down = whats(report)["erp down"]
    assert down["level"] == "critical" and "refused" in down["detail"].lower()
    assert down["runbook_url"] == "runbooks/ErpDown.md"


def test_not_ready_a_page_and_invariant_violations_are_critical(live_erp):
    from erp_core.services import maintenance

    healthy_results(live_erp.data_dir)
    with live_erp.erp.db.session() as s:
        maintenance.set_state(s, True, "test")
    results.record(live_erp.data_dir, "invariants", False, violations=2,
                   first=[{"check": "trial_balance_zero", "detail": "debits != credits", "ref": "x"}])
    alerts.record(live_erp.data_dir, notification(alert("ErpDatabaseDown", severity="page")), evidence=False)
    rc, report, _ = status(live_erp.data_dir, "--erp-url", live_erp.url)
    assert rc == 17
    found = whats(report)
    assert {"erp not ready", "alert ErpDatabaseDown", "invariant violations"} <= set(found)
    assert all(found[w]["level"] == "critical" for w in ("erp not ready", "alert ErpDatabaseDown",
                                                           "invariant violations"))
    assert "debits != credits" in found["invariant violations"]["detail"]


def test_disk_below_the_limit_is_critical(live_erp):
    healthy_results(live_erp.data_dir)
    rc, report, _ = status(live_erp.data_dir, "--erp-url", live_erp.url,
                           ERPCTL_PROBE_DISK_MIN_FREE_BYTES=str(1 << 60))
    assert rc == 17 and whats(report)["disk nearly full"]["runbook_url"] == "runbooks/DiskSpaceLow.md"


def test_stuck_upgrade_and_old_backup_are_warnings(live_erp):
    import time

    healthy_results(live_erp.data_dir)
    upgrade_in_progress(live_erp.data_dir, "backfill", time.time() - 7200)
    rc, report, _ = status(live_erp.data_dir, "--erp-url", live_erp.url,
                           ERPCTL_PROBE_BACKUP_MAX_AGE_SECONDS="0.001")
    assert rc == 16
    assert {"upgrade stuck", "backup too old"} == set(whats(report))
    assert report["upgrade"]["stage"] == "backfill"

    upgrade_in_progress(live_erp.data_dir, "verify", time.time() - 60, runner_alive=False)
    rc, report, _ = status(live_erp.data_dir, "--erp-url", live_erp.url)
    assert rc == 16 and "upgrade interrupted" in whats(report), report["attention"]


def test_what_failed_at_its_last_run_is_checked_again_now(live_erp):
    """A probe and the invariants job failed at their last scheduled run (the database was down); it is back.
    `erpctl status` runs them again before answering: the recovered ones are no longer flagged (their fresh
    runs recorded, the failure count kept for the metrics), one still failing is flagged with its fresh detail."""
    from erp_core.services import maintenance

    d = live_erp.data_dir
    healthy_results(d)
    results.record(d, "probe.business", False, duration=0.2, detail="login failed: database unreachable")
    results.record(d, "probe.readyz", False, duration=0.1, detail="an old detail")
    results.record(d, "scheduler.invariants", False, error="OperationalError: database unreachable", failures=3,
                   last_failure_at=1.0e9, last_error="OperationalError: database unreachable")
    before = results.read(d)
    with live_erp.erp.db.session() as s:  # what still fails: the ERP is read-only, /readyz says not ready
        maintenance.set_state(s, True, "test")
    rc, report, r = status(d, "--erp-url", live_erp.url, ERPCTL_DATABASE_URL=live_erp.target.database_url)
    assert report["rechecked"] == {"probe.business": True, "probe.readyz": False, "invariants": True}, report
    found = whats(report)
    assert "probe business failing" not in found and "scheduled job invariants failing" not in found, found
    assert "an old detail" not in found["probe readyz failing"]["detail"], found
    assert rc == 17 and "erp not ready" in found
    after = results.read(d)
    assert after["probe.business"].ok and after["probe.business"].at > before["probe.business"].at
    inv = after["scheduler.invariants"]
    assert inv.ok and inv.value("failures") == 3 and inv.value("last_failure_at") == 1.0e9  # the metrics keep them
    assert after["invariants"].value("violations") == 0
    human = erpctl("status", "--data-dir", d, "--erp-url", live_erp.url, **DISK_OK,
                   ERPCTL_DATABASE_URL=live_erp.target.database_url)
    assert "ran again now, their latest run had failed: probe.readyz" in human.stdout
    assert r.stderr.count("\n") <= 1, r.stderr  # the exit's JSON error line, no log of the rechecks
