"""After a drill: sign-off and findings change its record (atomically, evidence-logged), never while it runs;
erpctl drill list shows every drill with its figures against targets and its sign-off state."""

from __future__ import annotations

import hashlib
import json

import pytest

from controlplane import layout
from controlplane.drills import review
from controlplane.errors import DrillEditRefused
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import erpctl, ok
from tests.controlplane.drills.conftest import FAILED, PASSED


def record_of(inst, drill) -> dict:
    return json.loads(layout.path(inst.data_dir, "drill_record", id=drill).read_text(encoding="utf-8"))


def file_sha256(inst, drill) -> str:
    return hashlib.sha256(layout.path(inst.data_dir, "drill_record", id=drill).read_bytes()).hexdigest()


def test_sign_off_is_recorded_and_evidence_logged(drills):
    before = record_of(drills, PASSED)
    row = review.sign_off(drills, PASSED, "drill lead", "Wang Fang", "objectives met")
    after = record_of(drills, PASSED)
    assert after["signoffs"] == [row] and row["role"] == "drill lead" and row["comment"] == "objectives met"
    assert {k: v for k, v in after.items() if k != "signoffs"} == {k: v for k, v in before.items() if k != "signoffs"}
    logged = EvidenceLog(drills.data_dir).records()[-1]
    assert logged["kind"] == "drill.signoff" and logged["data"]["name"] == "Wang Fang"
    assert logged["data"]["record_sha256"] == file_sha256(drills, PASSED)
    with pytest.raises(DrillEditRefused, match="already signed"):
        review.sign_off(drills, PASSED, "drill lead", "Wang Fang")
    review.sign_off(drills, PASSED, "auditor", "Wang Fang")  # another role
    assert len(record_of(drills, PASSED)["signoffs"]) == 2


def test_a_running_drill_takes_no_sign_off_nor_finding(drills):
    path = layout.path(drills.data_dir, "drill_record", id=FAILED)
    record = record_of(drills, FAILED)
    path.write_text(json.dumps({**record, "state": "running", "ended_at": None}))
    r = erpctl("drill", "sign-off", FAILED, "--role", "auditor", "--name", "Li Na", "--data-dir", drills.data_dir)
    assert r.returncode == 82 and "still running" in r.stderr and "erpctl drill abort" in r.stderr
    with pytest.raises(DrillEditRefused, match="still running"):
        review.add_finding(drills, FAILED, "late", "low")
    assert record_of(drills, FAILED)["signoffs"] == [] and len(record_of(drills, FAILED)["findings"]) == 1
    assert EvidenceLog(drills.data_dir).records() == []


def test_findings_and_remediation_items(drills):
    row = review.add_finding(drills, FAILED, "The restore runbook has no step for a damaged WAL", "medium",
                             owner="ops-bob", due="2027-01-15", action="Add the WAL step to ErpDatabaseDown")
    assert row["finding"] == {"id": "F2", "text": "The restore runbook has no step for a damaged WAL",
                              "severity": "medium"}
    record = record_of(drills, FAILED)
    assert [f["id"] for f in record["findings"]] == ["F1", "F2"]
    assert record["remediation"][-1] == {"finding": "F2", "action": "Add the WAL step to ErpDatabaseDown",
                                         "owner": "ops-bob", "due": "2027-01-15", "status": "open"}
    logged = EvidenceLog(drills.data_dir).records()[-1]
    assert logged["kind"] == "drill.finding" and logged["data"]["record_sha256"] == file_sha256(drills, FAILED)
    assert review.add_finding(drills, FAILED, "no action", "low")["finding"]["id"] == "F3"
    for kwargs, field in (({"owner": "x"}, "action"), ({"action": "a", "due": "soon"}, "due")):
        with pytest.raises(DrillEditRefused) as err:
            review.add_finding(drills, FAILED, "bad", "low", **kwargs)
        assert err.value.field == field
    with pytest.raises(DrillEditRefused):
        review.add_finding(drills, FAILED, "bad", "critical")


def test_finding_and_sign_off_commands_then_list(drills):
    d = ["--data-dir", drills.data_dir]
    out = ok("drill", "finding", PASSED, "add", "--text", "Detection took a probe cycle", "--severity", "low",
             "--action", "Probe every 5 s", "--owner", "ops-alice", "--due", "2027-02-01", *d).stdout
    assert "finding F1 added" in out and "ops-alice, due 2027-02-01" in out
    ok("drill", "sign-off", PASSED, "--role", "business owner", "--name", "Wang Fang", *d)
    rows = json.loads(ok("--json", "drill", "list", *d).stdout)["drills"]
    assert [r["id"] for r in rows] == [FAILED, PASSED]  # newest first
    failed, passed = rows
    assert failed["state"] == "failed" and failed["scenario"] == "database-corrupted"
    assert failed["results"]["rto"] == {"target": 300, "measured": None, "pass": False}
    assert failed["results"]["rpo_writes"] == {"target": 0, "measured": 3, "pass": False}
    assert failed["signoffs"] == [] and failed["open_remediation"] == 1
    assert passed["results"]["rto"] == {"target": 120, "measured": 31.5, "pass": True}
    assert passed["signoffs"] == [{"role": "business owner", "name": "Wang Fang"}]
    r = erpctl("drill", "finding", PASSED, "done", "--finding", "F9", *d)
    assert r.returncode == 82 and "no remediation item for finding 'F9'" in r.stderr
    assert "remediation of F1 done" in ok("drill", "finding", PASSED, "done", "--finding", "F1", *d).stdout
    assert [i["status"] for i in record_of(drills, PASSED)["remediation"]] == ["done"]
    assert EvidenceLog(drills.data_dir).records()[-1]["kind"] == "drill.remediation"
    text = ok("drill", "list", *d).stdout
    assert "-/300!" in text and "31.5/120" in text and "business owner" in text and "not signed" in text


def test_list_shows_an_unreadable_record_and_an_empty_data_dir(drills, tmp_path):
    assert review.list_drills(tmp_path / "nothing") == []
    layout.path(drills.data_dir, "drill_record", id=PASSED).write_text("{not json")
    rows = review.list_drills(drills.data_dir)
    assert rows[1]["state"] == "unreadable" and "cannot be read" in rows[1]["error"]
    assert rows[0]["state"] == "failed"
