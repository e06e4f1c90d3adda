"""A drill detected by a real Prometheus of its own (Debian's): erp-killed on SQLite with the ErpDown
alert's `for` shortened; the alert reaches firing in Prometheus's /api/v1/alerts, the record and both
reports carry the probes' and the alert's times and say the `for` was shortened, and the clean-up leaves
no Prometheus, no port, no scratch storage."""

from __future__ import annotations

import re
import shutil

import pytest

from controlplane.drills import report
from controlplane.installation import Installation
from tests.conftest import need

from . import helpers as h


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    if shutil.which("prometheus") is None:
        need("prometheus is not installed (apt-get install prometheus)")
    # `for` 0: ErpDown fires on the first evaluation that sees the ERP down; the supervisor of `erpctl up`
    # serves again within about two seconds, before any longer `for` ran out
    return h.run(tmp_path_factory.mktemp("prom") / "data", "erp-killed", "--detect", "prometheus",
                 "--alert-for", "0")


def test_the_alert_fires_in_the_drills_prometheus_and_both_times_are_recorded(ran):
    assert ran.exit_code == 0, ran.stderr[-2000:]
    rec = ran.record
    m, det = rec["measured"], rec["detection"]
    assert det["alert"] == "ErpDown" and det["alert_outcome"] == "fired"
    assert det["prometheus"]["for_shortened"] is True
    assert det["prometheus"]["for_seconds"] == 0 and det["prometheus"]["shipped_for_seconds"] == 60
    assert 0 < m["probe_detection_seconds"] <= rec["objectives"]["detection_seconds"]
    assert 0 < m["alert_pending_seconds"] <= m["alert_firing_seconds"] < 30
    assert m["detection_seconds"] == m["probe_detection_seconds"]  # erp-killed's objective judges the probes
    states = [e["detail"].get("state") for e in rec["timeline"] if e["phase"] == "detect"]
    assert "firing" in states
    assert h.left_by(ran) == []
    prom_port = int(det["prometheus"]["url"].rsplit(":", 1)[1])
    assert h.sandbox.port_free(prom_port), "the drill's Prometheus still listens"


def test_the_reports_give_the_probes_and_the_alerts_times_and_say_for_was_shortened(ran):
    inst = Installation.open(str(ran.data_dir), None)
    m = ran.record["measured"]
    page = open(report.write(inst, ran.record["id"], "html", "en")["path"], encoding="utf-8").read()
    section = page[page.index("<h3>Detection</h3>"):]
    for key in ("probe_detection_seconds", "alert_pending_seconds", "alert_firing_seconds"):
        assert f"{m[key]:.1f} s" in section, key
    assert re.search(r'data-for-shortened="true">0 s, SHORTENED for this drill \(shipped: 60 s\)', section)
    zh = open(report.write(inst, ran.record["id"], "html", "zh")["path"], encoding="utf-8").read()
    assert "本次演练已缩短" in zh and f"{m['alert_firing_seconds']:.1f} 秒" in zh
    data = report.build(inst.data_dir, ran.record["id"]).record
    assert data["measured"]["alert_firing_seconds"] == m["alert_firing_seconds"]


def test_without_prometheus_the_drill_says_so_and_the_probes_detect(tmp_path):
    """drill.prometheus naming no program on PATH is a machine without Prometheus."""
    ran = h.run(tmp_path / "data", "erp-killed", ERPCTL_DRILL_PROMETHEUS="no-such-prometheus")
    assert ran.exit_code == 0, ran.stderr[-2000:]
    rec = ran.record
    det, m = rec["detection"], rec["measured"]
    assert det["fallback"] == "probes" and det["fallback_reason"] == "not-installed" and det["prometheus"] is None
    assert "not installed" in det["note"] and det["judged"] == "probe"
    assert m["detection_seconds"] == m["probe_detection_seconds"] > 0
    assert "alert_pending_seconds" not in m and "alert_firing_seconds" not in m
    assert any(e["event"].startswith("Prometheus is not installed") for e in rec["timeline"])
    inst = Installation.open(str(ran.data_dir), None)
    page = open(report.write(inst, rec["id"], "html", "en")["path"], encoding="utf-8").read()
    assert "not installed: the alert was not evaluated, detection by the probes" in page
    zh = open(report.write(inst, rec["id"], "html", "zh")["path"], encoding="utf-8").read()
    assert "未安装：未评估告警，由探针检测" in zh
    assert h.left_by(ran) == []
    # --detect prometheus insists: the drill fails before its fault, naming what is missing
    strict = h.run(tmp_path / "strict", "erp-killed", "--detect", "prometheus",
                   ERPCTL_DRILL_PROMETHEUS="no-such-prometheus")
    assert strict.exit_code == 76 and not [e for e in strict.record["timeline"] if e["phase"] == "fault"]
    assert any("no no-such-prometheus on PATH" in f["text"] for f in strict.record["findings"])
    assert h.left_by(strict) == []
