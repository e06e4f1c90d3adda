"""Monitoring under a real `erpctl up`: the scheduler runs the probes, the ops /metrics shows them,
the webhook takes Alertmanager's token from the data directory, `erpctl status` finds the ERP, and
both /metrics outputs stay clean for promtool while requests come in."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
import requests

from tests.controlplane.cli_helpers import env, erpctl, erpctl_path, free_ports

from .helpers import families, promtool_check_metrics, sample
from .test_alerts import alert, notification

FAST = {f"ERPCTL_SCHEDULE_PROBE_{p}": "1s" for p in ("READYZ", "BUSINESS", "DB_INTEGRITY", "BACKUP_FRESHNESS",
                                                      "DISK_HEADROOM")}
START_TIMEOUT = 60


class UpProcess:
    def __init__(self, tmp_path, *args, **extra_env):
        self.err_path = tmp_path / f"up-{time.monotonic_ns()}.stderr"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen([erpctl_path(), "--json", "up", *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=self._err, stdin=subprocess.DEVNULL, text=True, env=env(**extra_env))
        self.info = None

    def started(self, timeout=START_TIMEOUT) -> dict:
        result = {}
        reader = threading.Thread(target=lambda: result.setdefault("line", self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = result.get("line")
        if not line:
            pytest.fail(f"erpctl up did not start (exit {self.proc.poll()}):\n{self.stderr}")
        self.info = json.loads(line)
        return self.info

    @property
    def stderr(self) -> str:
        self._err.flush()
        return self.err_path.read_text()

    def stop(self):
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=15)
        return rc, time.monotonic() - t0

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


@pytest.fixture
def up(tmp_path):
    started = []

    def start(*args, **extra_env):
        u = UpProcess(tmp_path, *args, **extra_env)
        started.append(u)
        return u

    yield start
    for u in started:
        u.close()


def wait_for_probes(ops: str, timeout: float = 30) -> dict:
    """Read the ops /metrics until every probe has run at least twice (last run after the first)."""
    deadline = time.monotonic() + timeout
    first = None
    while time.monotonic() < deadline:
        fams = families(requests.get(ops + "/metrics", timeout=5).text)
        runs = {s.labels["probe"]: s.value for s in fams["erpctl_probe_last_run_timestamp_seconds"].samples}
        if all(runs.values()):
            if first is None:
                first = runs
            elif all(runs[p] > first[p] for p in runs):
                return fams
        time.sleep(0.2)
    pytest.fail(f"the probes did not run twice within {timeout}s: {runs}")


def test_up_runs_the_probes_and_serves_metrics_alerts_and_status(tmp_path, up):
    data = tmp_path / "data"
    erp_port, ops_port = free_ports(2)
    u = up("--data-dir", data, "--erp-port", erp_port, "--ops-port", ops_port, **FAST)
    info = u.started()
    erp, ops = f"http://127.0.0.1:{erp_port}", f"http://127.0.0.1:{ops_port}"
    mon = info["monitoring"]
    assert mon["metrics_url"] == ops + "/metrics" and mon["alert_webhook_url"] == ops + "/alerts/webhook"
    assert {j["id"]: j["source"] for j in mon["jobs"]}["probe.readyz"] == "environment ERPCTL_SCHEDULE_PROBE_READYZ"
    for name in ("probe-login.json", "alert-webhook.token"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name

    fams = wait_for_probes(ops)
    for probe in ("readyz", "business", "db_integrity", "disk_headroom"):
        assert sample(fams, "erpctl_probe_success", probe=probe) == 1, probe
        assert sample(fams, "erpctl_probe_duration_seconds", probe=probe) > 0
    assert sample(fams, "erpctl_probe_success", probe="backup_freshness") == 0  # no backup yet
    assert sample(fams, "erpctl_scheduler_job_last_success_timestamp_seconds", job="probe.readyz") > 0
    assert sample(fams, "erpctl_erp_process_resident_memory_bytes") > 0

    # Some traffic on the ERP while both /metrics are scraped: promtool finds nothing in either.
    stop = threading.Event()

    def traffic():
        with requests.Session() as s:
            while not stop.is_set():
                for path in ("/healthz", "/readyz", "/api/v1/sales-orders", "/nope", "/api/v1/openapi.json"):
                    s.get(erp + path, timeout=10)

    workers = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        erp_text = requests.get(erp + "/metrics", timeout=10).text
        ops_text = requests.get(ops + "/metrics", timeout=10).text
    finally:
        stop.set()
        for w in workers:
            w.join(10)
    promtool_check_metrics(erp_text)
    promtool_check_metrics(ops_text)
    erp_fams = families(erp_text)
    assert sample(erp_fams, "erp_http_requests_total", method="GET", route="/api/v1/sales-orders", status="401") > 0
    assert sample(erp_fams, "erp_http_requests_total", method="POST", route="/api/v1/auth/login", status="200") >= 1
    assert sample(erp_fams, "erp_db_query_duration_seconds", "erp_db_query_duration_seconds_count") > 0

    # Alertmanager's notification with the token from the data directory; then the status sees it.
    token = (data / "alert-webhook.token").read_text().strip()
    assert requests.post(ops + "/alerts/webhook", json=notification(alert("ErpNotReady", severity="page")),
                         timeout=10).status_code == 401
    r = requests.post(ops + "/alerts/webhook", json=notification(alert("ErpNotReady", severity="page")),
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200
    assert requests.get(ops + "/alerts", timeout=10).json()["active"][0]["alertname"] == "ErpNotReady"

    st = erpctl("--json", "status", "--data-dir", data, ERPCTL_PROBE_DISK_MIN_FREE_BYTES="1")
    report = json.loads(st.stdout)
    assert report["erp"]["url"] == erp + "/" and report["erp"]["readyz"]["ready"]  # found through runtime.json
    assert report["erp"]["served_by_erpctl_up"]["running"]
    assert st.returncode == 17 and "alert ErpNotReady" in {a["what"] for a in report["attention"]}

    rc, took = u.stop()
    assert rc == 0 and took < 5, u.stderr
    assert "Traceback" not in u.stderr
    logs = [json.loads(line) for line in u.stderr.splitlines() if line.startswith("{")]
    assert not [rec for rec in logs if rec["logger"].startswith("apscheduler") and rec["level"] == "info"]
    assert [rec["probe"] for rec in logs if rec["msg"] == "probe failed"] == ["backup_freshness"]  # once, not per run

    st = erpctl("--json", "status", "--data-dir", data)
    assert st.returncode == 17 and json.loads(st.stdout)["erp"]["served_by_erpctl_up"]["running"] is False


def test_up_refuses_a_bad_schedule_before_serving(tmp_path):
    r = erpctl("up", "--data-dir", tmp_path / "data", "--erp-port", 0, "--ops-port", 0, timeout=60,
               ERPCTL_SCHEDULE_PROBE_READYZ="whenever")
    assert r.returncode == 2
    assert "probe.readyz" in r.stderr and "ERPCTL_SCHEDULE_PROBE_READYZ" in r.stderr and "fix:" in r.stderr
