"""The control plane's /metrics (ops console): every family present from the start, values from
the results, psutil host metrics, parsed by prometheus_client and clean for promtool."""

from __future__ import annotations

import datetime as dt
import json
import time

from controlplane import results
from controlplane.console.app import create_app
from controlplane.monitoring import probes

from controlplane.upgrade import state as upgrade_state

from .helpers import families, promtool_check_metrics, sample, upgrade_in_progress

GAUGES = [
    "erpctl_backup_last_success_timestamp_seconds", "erpctl_backup_last_bytes_added",
    "erpctl_restore_test_last_success_timestamp_seconds", "erpctl_restore_duration_seconds",
    "erpctl_invariant_violations", "erpctl_upgrade_in_progress", "erpctl_upgrade_stage_started_timestamp_seconds",
    "erpctl_host_cpu_usage_ratio", "erpctl_host_memory_available_bytes", "erpctl_host_memory_total_bytes",
    "erpctl_data_dir_filesystem_free_bytes", "erpctl_data_dir_filesystem_size_bytes",
    "erpctl_erp_process_resident_memory_bytes", "erpctl_erp_process_open_fds",
    "erpctl_pitr_restore_last_success_timestamp_seconds", "erpctl_replication_last_check_timestamp_seconds",
    "erpctl_replication_lag_bytes", "erpctl_replication_lag_transactions", "erpctl_replication_synchronous",
]
PER_PROBE = ["erpctl_probe_success", "erpctl_probe_duration_seconds", "erpctl_probe_last_run_timestamp_seconds"]
PER_LEVEL = ["erpctl_backup_verification_success", "erpctl_backup_verification_last_timestamp_seconds"]


def scrape(data_dir, job_ids=()) -> str:
    app = create_app({"erp": "http://127.0.0.1:8000/"}, data_dir=data_dir, job_ids=job_ids)
    r = app.test_client().get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    return r.get_data(as_text=True)


def test_every_metric_exists_with_a_value_before_anything_happened(tmp_path):
    text = scrape(tmp_path, ["probe.readyz", "backup.create"])
    fams = families(text)
    for name in GAUGES:
        assert fams[name].type == "gauge" and len(fams[name].samples) == 1, name
    for name in PER_PROBE:
        assert {s.labels["probe"] for s in fams[name].samples} == set(probes.NAMES)
        assert all(s.value == 0 for s in fams[name].samples)
    for name in PER_LEVEL:
        assert {s.labels["level"] for s in fams[name].samples} == {"L1", "L2", "L3", "L4"}
        assert all(s.value == 0 for s in fams[name].samples)
    assert {s.labels["severity"]: s.value for s in fams["erpctl_alerts_firing"].samples} == {
        "page": 0, "critical": 0, "ticket": 0, "warning": 0, "info": 0, "other": 0}
    assert {s.labels["job"]: s.value for s in fams["erpctl_scheduler_job_last_success_timestamp_seconds"].samples} \
        == {"probe.readyz": 0, "backup.create": 0}
    assert sample(fams, "erpctl_backup_last_success_timestamp_seconds") == 0
    assert sample(fams, "erpctl_upgrade_in_progress") == 0
    promtool_check_metrics(text)


def test_values_follow_the_recorded_results(tmp_path):
    t0 = time.time()
    results.record(tmp_path, "probe.readyz", True, duration=0.012, detail="ready")
    results.record(tmp_path, "probe.business", False, duration=1.5, detail="login failed")
    results.record(tmp_path, "backup.create", True, bytes_added=4096)
    results.record(tmp_path, "backup.create", False, error="store unreachable")
    results.record(tmp_path, "backup.verify.L1", True)
    results.record(tmp_path, "backup.verify.L2", False, failed="chunk 3")
    results.record(tmp_path, "backup.restore_test", True, duration=42.5)
    results.record(tmp_path, "invariants", False, violations=3, duration=0.5)
    results.record(tmp_path, "pitr.verify", True, duration=12.0)
    results.record(tmp_path, "fleet.replication", True, lag_bytes=8192, lag_transactions=30, synchronous=False)
    started = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    upgrade_in_progress(tmp_path, "expand", started.timestamp())
    results.record(tmp_path, "scheduler.probe.readyz", True, duration=0.01)
    text = scrape(tmp_path, ["probe.readyz"])
    fams = families(text)
    assert sample(fams, "erpctl_probe_success", probe="readyz") == 1
    assert sample(fams, "erpctl_probe_success", probe="business") == 0
    assert sample(fams, "erpctl_probe_duration_seconds", probe="business") == 1.5
    assert sample(fams, "erpctl_probe_last_run_timestamp_seconds", probe="readyz") >= t0
    assert sample(fams, "erpctl_backup_last_success_timestamp_seconds") >= t0  # the failure after it does not reset
    assert sample(fams, "erpctl_backup_last_bytes_added") == 4096
    assert sample(fams, "erpctl_backup_verification_success", level="L1") == 1
    assert sample(fams, "erpctl_backup_verification_success", level="L2") == 0
    assert sample(fams, "erpctl_backup_verification_last_timestamp_seconds", level="L2") >= t0
    assert sample(fams, "erpctl_backup_verification_last_timestamp_seconds", level="L3") == 0
    assert sample(fams, "erpctl_restore_test_last_success_timestamp_seconds") >= t0
    assert sample(fams, "erpctl_restore_duration_seconds") == 42.5
    assert sample(fams, "erpctl_invariant_violations") == 3
    assert sample(fams, "erpctl_pitr_restore_last_success_timestamp_seconds") >= t0
    assert sample(fams, "erpctl_replication_lag_bytes") == 8192
    assert sample(fams, "erpctl_replication_lag_transactions") == 30
    assert sample(fams, "erpctl_replication_synchronous") == 0
    assert sample(fams, "erpctl_replication_last_check_timestamp_seconds") >= t0
    assert sample(fams, "erpctl_upgrade_in_progress") == 1
    assert sample(fams, "erpctl_upgrade_stage_started_timestamp_seconds") == started.timestamp()
    assert sample(fams, "erpctl_scheduler_job_last_success_timestamp_seconds", job="probe.readyz") >= t0
    promtool_check_metrics(text)


def test_the_upgrade_metrics_follow_the_state_file_apply_writes(tmp_path):
    """What `erpctl upgrade apply` writes is what UpgradeStuck sees; a finished upgrade is none in progress."""
    upgrade_in_progress(tmp_path, "contract", 1700000000.5)
    fams = families(scrape(tmp_path))
    assert sample(fams, "erpctl_upgrade_stage_started_timestamp_seconds") == 1700000000.5
    assert sample(fams, "erpctl_upgrade_in_progress") == 1
    st = upgrade_state.load(tmp_path)
    st.status = "done"
    upgrade_state.archive(tmp_path, st)
    fams = families(scrape(tmp_path))
    assert sample(fams, "erpctl_upgrade_in_progress") == 0
    assert sample(fams, "erpctl_upgrade_stage_started_timestamp_seconds") == 0


def test_host_metrics_from_psutil(tmp_path):
    fams = families(scrape(tmp_path))
    assert 0 <= sample(fams, "erpctl_host_cpu_usage_ratio") <= 1
    assert 0 < sample(fams, "erpctl_host_memory_available_bytes") <= sample(fams, "erpctl_host_memory_total_bytes")
    free = sample(fams, "erpctl_data_dir_filesystem_free_bytes")
    assert 0 < free <= sample(fams, "erpctl_data_dir_filesystem_size_bytes")
    assert sample(fams, "erpctl_erp_process_resident_memory_bytes") > 10 << 20
    assert sample(fams, "erpctl_erp_process_open_fds") > 0


def test_console_index_links_metrics_and_alerts(tmp_path):
    app = create_app({"erp": "http://127.0.0.1:8000/"}, data_dir=tmp_path)
    links = app.test_client().get("/").json["links"]
    assert links["metrics"] == "/metrics" and links["alerts"] == "/alerts" and links["erp"]


def test_render_time_is_small(tmp_path):
    for i in range(20):
        results.record(tmp_path, f"scheduler.job{i}", True)
    app = create_app({}, data_dir=tmp_path, job_ids=[f"job{i}" for i in range(20)])
    client = app.test_client()
    client.get("/metrics")
    t0 = time.perf_counter()
    for _ in range(10):
        client.get("/metrics")
    assert (time.perf_counter() - t0) / 10 < 0.25  # generous: the bench measures it properly


def test_results_file_written_by_others_with_unknown_fields(tmp_path):
    (tmp_path / results.FILE).write_text(json.dumps({
        "backup.create.last_success": {"ok": True, "at": "2030-01-01T00:00:00+00:00", "bytes_added": "12"},
        "upgrade": {"ok": True, "at": 1, "in_progress": True, "started_at": "garbage"},
    }))
    fams = families(scrape(tmp_path))
    assert sample(fams, "erpctl_backup_last_success_timestamp_seconds") == dt.datetime(
        2030, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    assert sample(fams, "erpctl_backup_last_bytes_added") == 0  # not a number: not reported
    assert sample(fams, "erpctl_upgrade_stage_started_timestamp_seconds") == 0
