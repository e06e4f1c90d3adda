"""The exporter's runbook and drill metrics, from runbook run records and drill records (the drill record
contract: drills/<id>/record.json), and `promtool check metrics` on them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controlplane import layout
from controlplane.monitoring import exporter
from controlplane.runbook import records
from tests.monitors.helpers import RUNBOOKS

T0 = "2026-12-01T03:00:00+00:00"


def ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def _drill(data: Path, scenario: str, start: str, state: str, measured: dict | None, runbook: dict | None = None):
    rid = f"{start.replace('-', '').replace(':', '')[:15]}Z-{scenario}"
    path = layout.path(data, "drill_record", id=rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "id": rid, "scenario": {"name": scenario}, "state": state,
                                "started_at": start, "ended_at": start.replace("T03:00", "T03:02"),
                                "measured": measured, "runbook": runbook}))


def _run(data: Path, runbook: str, status: str, ended_at: str) -> None:
    rec = records.RunRecord(id=records.new_id(), runbook=runbook, path=f"/x/{runbook}.md", runbook_sha256="0",
                            env={}, params=[], yes=True, operator="ops", started_at=ended_at, status=status,
                            ended_at=ended_at)
    records.save(data, rec)


def _samples(data: Path) -> tuple[str, dict]:
    text = generate_latest(exporter.registry(data)).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, out


def test_runbook_and_drill_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("ERPCTL_RUNBOOKS_DIR", str(RUNBOOKS))
    data = tmp_path / "data"
    _run(data, "ErpDown", records.RECOVERED, "2026-11-01T00:00:00+00:00")
    _run(data, "ErpDown", records.NOT_RECOVERED, "2026-11-20T00:00:00+00:00")  # not a completed exercise
    _run(data, "LowStock", records.RECOVERED, "2026-11-02T00:00:00+00:00")
    # erp-killed: passed, then failed (the last finished one counts), then one still running
    _drill(data, "erp-killed", "2026-11-30T03:00:00+00:00", "passed",
           {"detection_seconds": 8.2, "rto_seconds": 31.5, "rpo_writes_lost": 0, "rpo_seconds": 0.0},
           {"name": "ErpDown", "outcome": "completed"})
    _drill(data, "erp-killed", T0, "failed", {"detection_seconds": 9.0, "rto_seconds": None, "rpo_writes_lost": 3,
                                              "rpo_seconds": 4.5}, {"name": "ErpDown", "outcome": "failed"})
    _drill(data, "erp-killed", "2026-12-02T03:00:00+00:00", "running", None)
    _drill(data, "disk-full", T0, "passed", {"detection_seconds": 60, "rto_seconds": 90, "rpo_writes_lost": 0,
                                             "rpo_seconds": 0}, {"name": "DiskSpaceLow", "outcome": "completed"})
    (layout.path(data, "drills") / "broken").mkdir()
    (layout.path(data, "drills") / "broken" / "record.json").write_text("{not json")

    text, got = _samples(data)
    rb = "erpctl_runbook_last_exercised_timestamp_seconds"
    assert got[(rb, (("paging", "true"), ("runbook", "ErpDown")))] == ts("2026-11-30T03:02:00+00:00")  # its drill
    assert got[(rb, (("paging", "false"), ("runbook", "LowStock")))] == ts("2026-11-02T00:00:00+00:00")
    assert got[(rb, (("paging", "true"), ("runbook", "DiskSpaceLow")))] == ts("2026-12-01T03:02:00+00:00")
    assert got[(rb, (("paging", "true"), ("runbook", "ErpCrashLooping")))] == 0.0   # never: still a series
    assert got[(rb, (("paging", "false"), ("runbook", "SiteRecovery")))] == 0.0     # a procedure: not paging
    k, d = (("scenario", "erp-killed"),), (("scenario", "disk-full"),)
    assert got[("erpctl_drill_success", k)] == 0 and got[("erpctl_drill_success", d)] == 1
    assert got[("erpctl_drill_last_run_timestamp_seconds", k)] == ts("2026-12-01T03:02:00+00:00")
    assert got[("erpctl_drill_rpo_lost_writes", k)] == 3 and got[("erpctl_drill_rpo_seconds", k)] == 4.5
    assert got[("erpctl_drill_detection_seconds", k)] == 9.0
    assert got[("erpctl_drill_rto_seconds", k)] != got[("erpctl_drill_rto_seconds", k)]  # NaN: not measured
    assert got[("erpctl_drill_rto_seconds", d)] == 90

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_without_drills_or_runs_every_runbook_is_never_exercised(tmp_path, monkeypatch):
    monkeypatch.setenv("ERPCTL_RUNBOOKS_DIR", str(RUNBOOKS))
    _text, got = _samples(tmp_path)
    names = {dict(labels)["runbook"] for (name, labels), v in got.items()
             if name == "erpctl_runbook_last_exercised_timestamp_seconds" and v == 0}
    assert {p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md"} == names
    assert not [n for n, _ in got if n.startswith("erpctl_drill_")]
