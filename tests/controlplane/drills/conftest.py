"""Shared fixtures of the drill report tests: a data directory holding two real-looking drill records
(tests/fixtures/drills: a passed drill of erp-killed on SQLite, a failed drill of database-corrupted on
PostgreSQL, each with its artifacts), and drill scenario files for the approval rules.

    drills        -> Installation on tmp_path/data with both drills, and tmp_path/runbooks/drills/*.yaml
    PASSED, FAILED -> the two drills' ids
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controlplane.installation import Installation

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "drills"
PASSED = "20261201T021500Z-erp-killed"
FAILED = "20261202T031000Z-database-corrupted"
SCENARIOS = {"erp-killed": "destructive: false\n", "database-corrupted": "destructive: true\n",
             "erp-hung": "title: The ERP hangs\n"}


@pytest.fixture
def drills(tmp_path) -> Installation:
    data, runbooks = tmp_path / "data", tmp_path / "runbooks"
    shutil.copytree(FIXTURES, data / "drills")
    (runbooks / "drills").mkdir(parents=True)
    for name, text in SCENARIOS.items():
        (runbooks / "drills" / f"{name}.yaml").write_text(f"name: {name}\n{text}")
    return Installation.open(str(data), None, runbooks_dir=str(runbooks))
