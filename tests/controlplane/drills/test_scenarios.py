"""Every shipped drill scenario is valid against the schema, and a bad one is refused naming its file,
the key and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controlplane.drills import scenario as sc
from controlplane.errors import ScenarioInvalid, ScenarioNotFound

RUNBOOKS = Path(__file__).resolve().parents[3] / "runbooks"
REQUIRED_FAULTS = {"kill-erp", "hang-erp", "corrupt-database", "delete-rows", "disk-full", "backup-store-unreachable",
                   "upgrade-killed", "field-key-lost"}


def test_every_shipped_scenario_is_valid_and_names_a_runbook_that_exists():
    loaded = sc.load_all(RUNBOOKS)
    assert {l.scenario.fault.kind for l in loaded} >= REQUIRED_FAULTS
    for l in loaded:
        s = l.scenario
        assert s.name == l.path.stem and len(l.sha256) == 64
        assert (RUNBOOKS / f"{s.recover.runbook}.md").is_file()
        assert s.objectives.rto_seconds > 0 and (s.detect.status or s.detect.commands) and s.after


@pytest.fixture
def books(tmp_path):
    d = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS, d)
    return d


@pytest.mark.parametrize("edit, key, fix", [
    (lambda t: t.replace("rto_seconds: 120", "rto_seconds: -1"), "objectives.rto_seconds", "correct the value"),
    (lambda t: t.replace("fault: {kind: kill-erp}", "fault: {kind: kill-everything}"), "fault.kind", "one of"),
    (lambda t: t + "colour: red\n", "colour", "remove it"),
    (lambda t: t.replace("recover: {runbook: ErpDown}", "recover: {runbook: NoSuchBook}"), "recover.runbook",
     "erpctl runbook list"),
    (lambda t: t.replace("name: erp-killed", "name: other"), "name", "rename the file"),
    (lambda t: t.replace('status: ["erp down", "erp not ready", "probe readyz failing", "probe business failing"]',
                         "status: []"), "detect", "correct the value"),
])
def test_a_bad_scenario_names_its_file_the_key_and_the_fix(books, edit, key, fix):
    path = books / "drills" / "erp-killed.yaml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ScenarioInvalid) as err:
        sc.find(books, "erp-killed")
    assert "erp-killed.yaml" in err.value.detail and f"key {key}" in err.value.detail, err.value.detail
    assert fix in err.value.fix.lower() or fix in err.value.fix, err.value.fix


def test_a_missing_key_and_an_unknown_scenario(books):
    path = books / "drills" / "erp-killed.yaml"
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.startswith("objectives")))
    with pytest.raises(ScenarioInvalid, match="key objectives: Field required"):
        sc.find(books, "erp-killed")
    with pytest.raises(ScenarioNotFound) as err:
        sc.find(books, "no-such-drill")
    assert "erp-hung" in err.value.fix
