"""Approvals of live drills: two different named people, neither the operator, a window containing now, never
a destructive scenario; an approval expires with its window."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from controlplane.drills import approvals
from controlplane.errors import ApprovalRefused, LiveDrillNotApproved
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import erpctl, ok

NOW = dt.datetime(2026, 12, 5, 22, 30, tzinfo=dt.timezone.utc)
WINDOW = "2026-12-05T22:00Z/2026-12-06T02:00Z"


def approve(inst, by, window=WINDOW, scenario="erp-killed"):
    return approvals.approve(inst, scenario, by, approvals.parse_window(window, now=NOW), now=NOW)


def refused(inst, operator="ops-alice", now=NOW, scenario="erp-killed") -> LiveDrillNotApproved:
    with pytest.raises(LiveDrillNotApproved) as err:
        approvals.require_live(inst, scenario, operator, now=now)
    assert err.value.exit_code == 81 and "erpctl drill" in err.value.fix
    return err.value


def test_two_other_people_in_the_window_approve(drills):
    approve(drills, "Zhang Wei")
    approve(drills, "Li Na")
    got = approvals.require_live(drills, "erp-killed", "ops-alice", now=NOW)
    assert sorted(a["by"] for a in got) == ["Li Na", "Zhang Wei"]
    assert approvals.common_window(got) == {"start": "2026-12-05T22:00:00Z", "end": "2026-12-06T02:00:00Z"}
    logged = [r for r in EvidenceLog(drills.data_dir).records() if r["kind"] == "drill.approve"]
    assert [r["data"]["by"] for r in logged] == ["Zhang Wei", "Li Na"]
    assert {a["evidence"]["hash"] for a in got} == {r["hash"] for r in logged}


def test_the_same_person_twice_is_one_approval(drills):
    approve(drills, "Zhang Wei")
    approve(drills, " zhang  wei ")
    err = refused(drills)
    assert "1 valid (zhang wei)" in err.detail.lower() and "already counted" in err.detail


def test_the_operator_cannot_approve_their_own_drill(drills):
    approve(drills, "ops-alice")
    approve(drills, "Li Na")
    err = refused(drills, operator="ops-alice")
    assert "1 valid (Li Na)" in err.detail and "ops-alice: the operator cannot approve their own drill" in err.detail
    assert len(approvals.require_live(drills, "erp-killed", "ops-carol", now=NOW)) == 2


def test_approvals_expire_with_their_window(drills):
    approve(drills, "Zhang Wei")
    approve(drills, "Li Na", window="2026-12-05T22:00Z/2026-12-05T23:00Z")
    assert len(approvals.require_live(drills, "erp-killed", "ops-alice", now=NOW)) == 2
    err = refused(drills, now=NOW + dt.timedelta(hours=1))
    assert "Li Na: its window ended at 2026-12-05T23:00:00Z" in err.detail and "1 valid (Zhang Wei)" in err.detail
    err = refused(drills, now=NOW - dt.timedelta(hours=1))  # before the window opens
    assert "0 valid" in err.detail and "starts at 2026-12-05T22:00:00Z" in err.detail


def test_approvals_are_per_scenario(drills):
    approve(drills, "Zhang Wei")
    approve(drills, "Li Na")
    err = refused(drills, scenario="erp-hung")
    assert "0 valid (none)" in err.detail


def test_a_destructive_scenario_is_refused(drills):
    with pytest.raises(ApprovalRefused) as err:
        approve(drills, "Zhang Wei", scenario="database-corrupted")
    assert "destructive: true" in err.value.detail and "sandbox" in err.value.fix
    err = refused(drills, scenario="database-corrupted")
    assert "destroys data" in err.detail and err.extra["missing"] == ["non-destructive scenario"]
    assert "no drill scenario 'nope'" in refused(drills, scenario="nope").detail


@pytest.mark.parametrize("window, says", [("2026-12-05T22:00/2026-12-06T02:00Z", "has no time zone"),
                                          ("2026-12-06T02:00Z/2026-12-05T22:00Z", "ends before it starts"),
                                          ("2026-12-05T20:00Z/2026-12-05T21:00Z", "has already ended"),
                                          ("tonight", "is not START/END"),
                                          ("22:00/23:00", "is not an ISO-8601 time")])
def test_bad_windows(window, says):
    with pytest.raises(ApprovalRefused) as err:
        approvals.parse_window(window, now=NOW)
    assert says in err.value.detail and err.value.field == "window"


def test_the_command(drills):
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    window = f"{start.isoformat()}/{(start + dt.timedelta(hours=2)).isoformat()}"
    args = ["--window", window, "--data-dir", drills.data_dir, "--runbooks-dir", drills.get("runbooks_dir")]
    row = json.loads(ok("--json", "drill", "approve", "erp-killed", "--by", "Zhang Wei", "--comment", "ok", *args).stdout)
    assert row["by"] == "Zhang Wei" and row["evidence"]["seq"] == 1
    r = erpctl("drill", "approve", "database-corrupted", "--by", "Li Na", *args)
    assert r.returncode == 83 and "destructive" in r.stderr and "fix:" in r.stderr
    assert [a["by"] for a in approvals.load(drills)] == ["Zhang Wei"]
