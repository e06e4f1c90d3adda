"""End to end, all real: under a real `erpctl up` with real Prometheus and Alertmanager (the shipped
rules and routes, tests/monitors/alerting.py, EvidenceLogTampered's `for` 5 s here), an erpctl command
killed (SIGKILL, for real: a controlplane/faults.py failpoint) inside its evidence append raises no
alarm: the log still verifies, the next command repairs it and records the repair. A record edited
in the log file pages EvidenceLogTampered to the person on call."""

from __future__ import annotations

import json
import signal
import time

from controlplane import layout
from controlplane.evidence import REPAIR_KIND, EvidenceLog
from tests.controlplane.cli_helpers import erpctl, ok_json

from .alerting import FOR_SECONDS, PAGE_BOUND, shipped_page_seconds, start_pipeline
from .conftest import Up


def _chain_ok(pipe) -> str | None:
    got = pipe.query("erpctl_evidence_chain_ok")
    return got[0]["value"][1] if got else None


def test_a_killed_append_raises_no_alarm_and_a_tampered_record_pages(tmp_path, monkeypatch):
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    data = tmp_path / "data"
    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", "a test passphrase")
    ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", data)
    up = Up(data, tmp_path / "erpctl-up.log")
    pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{up.erp_port}", "erpctl": f"127.0.0.1:{up.ops_port}"},
                          up.ops_port, data / WEBHOOK_TOKEN_FILE, shortened=("EvidenceLogTampered",))
    try:
        pipe.wait("the evidence chain exported intact", lambda: _chain_ok(pipe) == "1", 30)
        killed = erpctl("backup", "create", "--data-dir", data, ERPCTL_FAILPOINTS="evidence.append.after_log=kill")
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        log = EvidenceLog(data)
        assert log.interrupted() is not None, "the kill did not interrupt an append"
        t_kill = time.monotonic()
        r = erpctl("--json", "evidence", "verify", "--data-dir", data)
        assert r.returncode == 0 and json.loads(r.stdout)["interrupted"], r.stdout + r.stderr
        # No false alarm: the interrupted log stays intact for the exporter for longer than the `for`.
        while time.monotonic() - t_kill < FOR_SECONDS + PAGE_BOUND:
            assert _chain_ok(pipe) == "1"
            time.sleep(0.5)
        ok_json("backup", "create", "--data-dir", data)  # the next command completes the append
        assert log.interrupted() is None
        assert [x for x in log.records() if x["kind"] == REPAIR_KIND], "the repair was not recorded"
        assert erpctl("evidence", "verify", "--data-dir", data).returncode == 0
        assert not pipe.query('ALERTS{alertname="EvidenceLogTampered"}')
        assert not pipe.oncall.alerts("EvidenceLogTampered")

        path = layout.path(data, "evidence")
        lines = path.read_text().splitlines()
        rec = json.loads(lines[1])
        rec["kind"] = "backup.forgotten"  # a record's field edited in the file
        lines[1] = json.dumps(rec)
        t_tamper = time.monotonic()
        path.write_text("\n".join(lines) + "\n")
        pipe.wait("EvidenceLogTampered at the person's receiver", lambda: pipe.oncall.alerts("EvidenceLogTampered"),
                  PAGE_BOUND + 10)
        ((arrived, page), *_) = pipe.oncall.alerts("EvidenceLogTampered")
        took = arrived - t_tamper
        assert erpctl("evidence", "verify", "--data-dir", data).returncode != 0
        assert page["labels"]["severity"] == "page" and page["labels"]["instance"] == f"127.0.0.1:{up.ops_port}"
        assert page["annotations"]["runbook_url"].endswith("/EvidenceLogTampered.md")
        print(f"\nkilled evidence append: no alert in {FOR_SECONDS + PAGE_BOUND} s, repaired by the next command; "
              f"a record edited in the log paged EvidenceLogTampered after {took:.1f} s (for {FOR_SECONDS} s here; "
              f"shipped: within {shipped_page_seconds('EvidenceLogTampered'):.0f} s)")
        assert took <= PAGE_BOUND, f"paged after {took:.1f}s"
    finally:
        pipe.stop()
        up.process.stop()
