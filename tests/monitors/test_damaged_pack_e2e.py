"""End to end, all real: one byte flipped in a pack of a real repository under a real `erpctl up`.
`erpctl backup verify --level 1` fails and records it; real Prometheus and Alertmanager with the
shipped rules and routes (tests/monitors/alerting.py, the alert's `for` 5 s here) raise
BackupVerificationFailed, a ticket, which the shipped routes give the control plane's receiver.
Then runbooks/BackupVerificationFailed.md runs as written through the product's runbook engine
(`erpctl runbook run ... --yes --json`): the next backup stores the damaged chunk again, the latest
backup verifies, and the resolved notification arrives."""

from __future__ import annotations

import json
import time

from bench.alerting_stack import shipped_bound
from tests.controlplane.backup.test_heal import _flip_a_byte
from tests.controlplane.cli_helpers import erpctl, ok_json

from .alerting import PAGE_BOUND, shipped_page_seconds, start_pipeline

PASSPHRASE = "a damaged-pack passphrase"


def test_a_damaged_pack_alerts_and_the_runbook_heals_it_with_the_next_backup(tmp_path, monkeypatch):
    from controlplane.backup.repository import open_repository
    from controlplane.monitoring import alerts
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    from .conftest import Up

    data = tmp_path / "data"
    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", PASSPHRASE)
    ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", data)
    up = Up(data, tmp_path / "erpctl-up.log")
    pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{up.erp_port}", "erpctl": f"127.0.0.1:{up.ops_port}"},
                          up.ops_port, data / WEBHOOK_TOKEN_FILE, shortened=("BackupVerificationFailed",))
    try:
        first = ok_json("backup", "create", "--data-dir", data)
        ok_json("backup", "create", "--data-dir", data)
        repo = open_repository(f"file://{data / 'backups'}", passphrase=PASSPHRASE)
        chunk = repo.load_manifest(first["id"]).chunks[0]
        _flip_a_byte(data / "backups", repo, chunk)

        t0 = time.monotonic()
        r = erpctl("--json", "backup", "verify", "--level", "1", "--data-dir", data)
        assert r.returncode == 28, r.stdout + r.stderr
        assert any(p["chunk"] == chunk for b in json.loads(r.stdout)["backups"] for lv in b["levels"]
                   for p in lv["problems"]), r.stdout

        # A ticket: the shipped routes give it the control plane's receiver, not the person on call.
        assert shipped_bound("BackupVerificationFailed")["receiver"] == "erpctl-console"

        def at_the_control_plane(status="firing"):
            return [a for a in (alerts.active(data) if status == "firing" else alerts.recent_resolved(data))
                    if a["alertname"] == "BackupVerificationFailed"]

        pipe.wait("BackupVerificationFailed at the control plane's receiver", at_the_control_plane, PAGE_BOUND + 20)
        alerted = time.monotonic() - t0
        assert not pipe.oncall.alerts("BackupVerificationFailed")
        firing = pipe.query('ALERTS{alertname="BackupVerificationFailed", alertstate="firing"}')
        assert {s["metric"]["severity"] for s in firing} == {"ticket"}, firing

        t_runbook = time.monotonic()
        run = erpctl("--json", "runbook", "run", "BackupVerificationFailed", "--yes", "--data-dir", data,
                     timeout=600, ERPCTL_PROMETHEUS_URL=pipe.prom_url, ERPCTL_ALERTMANAGER_URL=pipe.am_url)
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        ran = time.monotonic() - t_runbook
        # Every check passes at once but `erpctl status`, which lists the alert until Prometheus' next
        # evaluation resolves it (its runbook says so): the one finding an engineer then waits out.
        end = events[-1]
        check_findings = [f for f in end["findings"] if f["kind"] == "Check recovery"]
        assert run.returncode in (0, 63), run.stdout[-6000:] + run.stderr[-3000:]
        assert all(f["command"] == "erpctl status" for f in check_findings), end
        r = erpctl("--json", "backup", "verify", "--level", "1", "latest", "--data-dir", data)
        assert r.returncode == 0, r.stdout + r.stderr
        pipe.wait("BackupVerificationFailed resolved at the control plane's receiver",
                  lambda: at_the_control_plane("resolved"), PAGE_BOUND + 30)
        resolved = time.monotonic() - t0
        assert not at_the_control_plane()
        r = erpctl("status", "--data-dir", data, ERPCTL_PROMETHEUS_URL=pipe.prom_url, ERPCTL_ALERTMANAGER_URL=pipe.am_url)
        assert r.returncode == 0, r.stdout + r.stderr
        creates = [e for e in events if "backup create" in json.dumps(e)]
        assert creates, events
        print(f"\ndamaged pack (1 byte): BackupVerificationFailed at the control plane's receiver {alerted:.1f} s "
              f"after the failed L1 verification (for 5 s here; shipped: within "
              f"{shipped_page_seconds('BackupVerificationFailed'):.0f} s), the runbook ran in {ran:.1f} s, "
              f"resolved notification {resolved:.1f} s after the failed verification")
    finally:
        pipe.stop()
        up.process.stop()
