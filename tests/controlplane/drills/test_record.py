"""record.json: typed load and save, atomic, keys written by others kept."""

from __future__ import annotations

import json

import pytest

from controlplane import layout
from controlplane.drills import record as records
from controlplane.errors import DataDirProblem


def test_a_record_saves_loads_and_keeps_what_others_added(tmp_path):
    rec = records.DrillRecord(id=records.drill_id("erp-killed"), scenario={"name": "erp-killed"})
    rec.event("prepare", "drill started", backend="sqlite")
    rec.check("invariants", "steady-state", True, "ok")
    rec.finding("Something to fix.", "low")
    path = rec.save(tmp_path)
    assert path == layout.path(tmp_path, "drill_record", id=rec.id) and path.parent.name == rec.id
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["state"] == "running" and data["findings"][0]["id"] == "F1"
    assert data["timeline"][0]["phase"] == "prepare" and data["timeline"][0]["at"].endswith("Z")
    data["signoffs"] = [{"role": "auditor", "name": "a", "at": "2026-12-05T00:00:00Z"}]
    data["report"] = {"html": "report.html"}          # a key this module does not know
    path.write_text(json.dumps(data))
    again = records.load(tmp_path, rec.id)
    again.state = "passed"
    again.save(tmp_path)
    final = json.loads(path.read_text())
    assert final["report"] == {"html": "report.html"} and final["signoffs"][0]["role"] == "auditor"
    assert final["state"] == "passed" and records.all_ids(tmp_path) == [rec.id]


def test_an_unknown_version_or_drill_is_refused(tmp_path):
    with pytest.raises(DataDirProblem, match="no drill"):
        records.load(tmp_path, "nope")
    rec = records.DrillRecord(id="x-erp-killed", scenario={})
    rec.save(tmp_path)
    p = rec.path(tmp_path)
    p.write_text(json.dumps({**json.loads(p.read_text()), "version": 9}))
    with pytest.raises(DataDirProblem, match="version 9"):
        records.load(tmp_path, "x-erp-killed")
