"""erpctl erp repair stock-cache, the real command on SQLite and PostgreSQL: on-hand rows edited behind
the ERP's back are listed by a dry run that changes nothing, refused outside maintenance mode, and rebuilt
in maintenance with the InvariantViolations runbook's own sequence; the rebuild is in the ERP's audit
log and the evidence log, and the invariants' result recorded for erpctl status and the alert."""

from __future__ import annotations

import json

import pytest

from controlplane import results
from controlplane.evidence import EvidenceLog
from erp_core import crypto
from erp_core.db import Database
from tests.conftest import fresh_database_url
from tests.controlplane.cli_helpers import erpctl, ok, ok_json
from tests.erp_core.test_invariants import run_sql, seed
from tests.erp_core.test_stockcache import EXPECTED, TAMPER, audit_rows, levels


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tampered(request, tmp_path):
    """(the erpctl target options, the Database): the small business of test_invariants, three on-hand
    rows edited with plain SQL. The data directory is tmp_path (SQLite: its erp.sqlite3)."""
    url = fresh_database_url(request.param, request, tmp_path)
    crypto.configure("test-key")
    database = Database(url)
    seed(database)
    for sql in TAMPER:
        run_sql(database, sql)
    yield ("--data-dir", tmp_path, *(() if request.param == "sqlite" else ("--database-url", url))), database
    database.dispose()


def test_a_dry_run_lists_old_and_new_and_changes_nothing(tampered, tmp_path):
    target, database = tampered
    before = levels(database)

    r = ok("erp", "repair", "stock-cache", "--dry-run", *target)
    assert "stock cache: 3 on-hand row(s) differ from the done moves" in r.stdout
    assert "A-1@MAIN (product 1, warehouse 1): 7.000 -> 4.500" in r.stdout
    assert "B-1@MAIN (product 2, warehouse 1): (no row) -> 5.000" in r.stdout
    assert "dry run: nothing changed" in r.stdout
    report = ok_json("erp", "repair", "stock-cache", "--dry-run", *target)
    assert report["corrections"] == EXPECTED and report["applied"] is False and "check" not in report

    unasked = erpctl("erp", "repair", "stock-cache", *target)  # no terminal to ask on
    assert unasked.returncode == 2 and "--yes" in unasked.stderr
    assert levels(database) == before and audit_rows(database) == []
    assert EvidenceLog(tmp_path).records() == []


def test_outside_maintenance_it_is_refused_with_the_command_to_switch_it_on(tampered, tmp_path):
    target, database = tampered
    before = levels(database)

    r = erpctl("erp", "repair", "stock-cache", "--yes", *target)

    assert r.returncode == 5, r.stderr
    assert "maintenance mode" in r.stderr and "fix:" in r.stderr and "erpctl erp maintenance on" in r.stderr
    assert levels(database) == before and audit_rows(database) == [] and EvidenceLog(tmp_path).records() == []


def test_the_runbook_sequence_rebuilds_records_and_checks_clean(tampered, tmp_path):
    target, database = tampered
    failed = erpctl("erp", "check", *target)
    assert failed.returncode == 13 and "erpctl erp repair stock-cache --yes" in failed.stderr
    assert results.read(tmp_path)["invariants"]["violations"] == 3

    ok("erp", "maintenance", "on", "--reason", "stock figures are being rebuilt", *target)
    done = ok_json("erp", "repair", "stock-cache", "--yes", *target)
    ok("erp", "maintenance", "off", *target)

    assert done["corrections"] == EXPECTED and done["applied"] is True and done["check"]["ok"] is True
    assert ok("erp", "check", *target).stdout.startswith("ok: no violations")
    assert results.read(tmp_path)["invariants"]["ok"] is True
    (record,) = [r for r in EvidenceLog(tmp_path).records() if r["kind"] == "erp.repair.stock_cache"]
    assert record["data"]["count"] == 3 and record["data"]["digest"] == done["digest"]
    assert record["data"]["corrections"] == EXPECTED
    assert ok_json("evidence", "verify", "--data-dir", tmp_path)["ok"] is True
    audited = audit_rows(database)
    assert [(a.entity_id, a.actor, a.after["repair_digest"]) for a in audited] == [
        ("1,1", "erpctl", done["digest"]), ("2,1", "erpctl", done["digest"]), ("2,2", "erpctl", done["digest"])]

    again = ok("erp", "repair", "stock-cache", "--dry-run", *target)
    assert "nothing to rebuild" in again.stdout


def test_other_kinds_left_after_the_rebuild_are_named_not_hidden(tampered, tmp_path):
    target, database = tampered
    run_sql(database, "UPDATE sales_orders SET net_total = net_total + 1 WHERE number = 'SO-1'")
    ok("erp", "maintenance", "on", *target)

    r = ok("erp", "repair", "stock-cache", "--yes", *target)

    assert "of other kinds remain" in r.stdout and "[document_totals_match_lines] sales order SO-1" in r.stdout
    report = json.loads(erpctl("--json", "erp", "check", *target).stdout)
    assert "on_hand_matches_moves" not in {v["check"] for v in report["violations"]}
    assert results.read(tmp_path)["invariants"]["ok"] is False
