"""Every shipped scenario, end to end in its sandbox on SQLite (--fresh, no demo data: the drill's own
workload), two on PostgreSQL (erp-killed, database-corrupted), a drill whose recovery fails, abort, and a
killed drill's clean-up.

The SQLite drills run three at a time (each is a few processes of its own: its erpctl up, its ERP, the
runbook engine's commands); each test waits for its own."""

from __future__ import annotations

import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from controlplane.drills import scenario as sc
from tests.conftest import PG_ADMIN_URL, reachable_pg_admin

from . import helpers as h

RUNBOOKS = Path(__file__).resolve().parents[3] / "runbooks"
NAMES = [p.stem for p in sc.paths(RUNBOOKS)]
BROKEN_RUNBOOK = """---
id: drill-broken
title: A runbook whose recovery fails
alerts: [DrillBroken]
severity: ticket
owner: ops
---

# A runbook whose recovery fails

## 1. What it means

A test runbook: its Recover step fails.

## 2. Confirm the ERP answers

```erpctl
erpctl erp maintenance status
```

## 3. Recover: a fix that does not work

```sh confirm
echo "the fix did not work" >&2; exit 3
```

## 4. Check recovery

```erpctl
erpctl erp maintenance status
```
"""


def on_release_1_0(data_dir: Path, release_store: Path) -> Path:
    """An installation serving release 1.0 with this tree's release installed beside it (the upgrade tests'
    releases, installed once a session): the installation an upgrade drill rehearses the upgrade of."""
    from controlplane import release
    from controlplane.config import Target
    from tests.controlplane.upgrade.conftest import NEW, OLD

    (data_dir / "releases").mkdir(parents=True)
    for version in (OLD, NEW):
        os.symlink(release_store / version, data_dir / "releases" / version)
    release.set_current(Target(data_dir, f"sqlite:///{data_dir / 'erp.sqlite3'}"), OLD, check_schema=False)
    return data_dir


@pytest.fixture(scope="module")
def drills(tmp_path_factory, release_store):
    root = tmp_path_factory.mktemp("drills")
    on_release_1_0(root / "upgrade-fails-halfway", release_store)
    pool = ThreadPoolExecutor(3, thread_name_prefix="drill")
    futures = {name: pool.submit(h.run, root / name, name) for name in NAMES}
    yield futures
    pool.shutdown(wait=True)


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_runs_end_to_end_in_its_sandbox(drills, name):
    ran = drills[name].result()
    rec = ran.record
    print(f"\n{name}: {rec['state']} {rec['measured']}")
    assert rec["scenario"]["name"] == name and rec["target"] == "sandbox" and rec["backend"] == "sqlite"
    assert [e["phase"] for e in rec["timeline"]][0] == "prepare" and rec["timeline"][-1]["phase"] == "cleanup"
    assert {"fault", "detect", "recover", "verify"} <= {e["phase"] for e in rec["timeline"]}, rec["timeline"]
    m = rec["measured"]
    assert 0 < m["detection_seconds"] < rec["objectives"]["detection_seconds"] * 2, m
    assert 0 < m["rto_seconds"] < 600 and m["acknowledged_writes"] > 0, m
    assert m["rpo_writes_lost"] >= 0 and m["duration_seconds"] > m["rto_seconds"], m
    assert rec["runbook"]["name"] == sc.find(RUNBOOKS, name).scenario.recover.runbook
    assert {r["objective"] for r in rec["results"]} == {"detection", "rto", "rpo_writes", "rpo_seconds"}
    honest = rec["runbook"]["outcome"] == "recovered" and all(r["pass"] for r in rec["results"]) \
        and all(c["ok"] for c in rec["checks"])
    assert rec["state"] == ("passed" if honest else "failed"), rec["findings"]
    assert (ran.exit_code == 0) == (rec["state"] == "passed"), ran.stderr[-2000:]
    assert rec["state"] == "passed", f"{name} failed: {rec['findings']}"
    assert rec["cleanup"]["ok"] and rec["cleanup"]["left_over"] == [] and h.left_by(ran) == []
    names = {a["name"] for a in rec["artifacts"]}
    assert {"workload.jsonl", "runbook.jsonl"} <= names
    if sc.find(RUNBOOKS, name).scenario.destructive:
        assert m["rpo_writes_lost"] > 0, "a restore of the last backup loses the writes made since, and says so"
        assert any("lost" in f["text"] for f in rec["findings"])


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_s_chinese_report_leaves_no_english_sentence(drills, name):
    """The timeline sentences and check names of each scenario's real run, in its Chinese report."""
    from controlplane.drills import report
    from controlplane.installation import Installation

    from .test_report_events import english_left, report_cells

    ran = drills[name].result()
    evidence = report.build(ran.data_dir, ran.record["id"]).evidence
    assert evidence["state"] == "matches" and evidence["kind"] == "drill.end", "the engine's last record vouches for it"
    written = report.write(Installation.open(str(ran.data_dir), None), ran.record["id"], "html", "zh")
    events, checks = report_cells(open(written["path"], encoding="utf-8").read())
    assert len(events) == len(ran.record["timeline"]) and checks
    left = [(cell, english_left(cell)) for cell in events + checks if english_left(cell)]
    assert left == [], left


def _check(rec: dict, name: str, phase: str = "after") -> dict:
    (found,) = [c for c in rec["checks"] if c["name"] == name and c["phase"] == phase]
    return found


def test_upgrade_fails_halfway_is_rolled_back_and_the_old_release_serves(drills):
    rec = drills["upgrade-fails-halfway"].result().record
    events = {e["phase"]: e for e in rec["timeline"]}
    (linked,) = [e["detail"] for e in rec["timeline"] if e["event"].startswith("sandbox serves release")]
    assert linked["from"] == "1.0.0" and linked["to"] == rec["versions"]["erpctl"], linked
    assert rec["versions"]["release"] == "1.0.0"
    fault = events["fault"]["detail"]
    assert fault["failpoint"] == "upgrade.backfill.batch" and fault["signal"] == "SIGKILL", fault
    assert events["detect"]["detail"]["item"]["what"] == "upgrade interrupted", events["detect"]
    assert rec["runbook"]["name"] == "UpgradeFailed" and rec["runbook"]["outcome"] == "recovered"
    release_check = _check(rec, "release")
    assert release_check["ok"] and "serves release 1.0.0" in release_check["detail"], release_check
    assert _check(rec, "invariants")["ok"] and rec["measured"]["rpo_writes_lost"] == 0, rec["measured"]
    assert rec["state"] == "passed", rec["findings"]


def test_field_key_lost_is_recovered_from_the_escrow_copy_and_every_value_decrypts(drills):
    rec = drills["field-key-lost"].result().record
    assert any(e["event"].startswith("field key escrowed") for e in rec["timeline"])
    (fault,) = [e["detail"] for e in rec["timeline"] if e["phase"] == "fault"]
    assert fault["how"] == "deleted" and fault["file"].endswith("field.key"), fault
    (detected,) = [e for e in rec["timeline"] if e["phase"] == "detect"]
    assert "erpctl field-key check exited 14" in detected["event"], detected
    assert rec["runbook"]["name"] == "FieldKeyLost" and rec["runbook"]["outcome"] == "recovered"
    for phase in ("steady-state", "after"):
        c = _check(rec, "field-key", phase)
        n = int(c["detail"].split(" of ")[1].split()[0])
        assert c["ok"] and n > 0 and c["detail"].startswith(f"{n} of {n} encrypted values decrypt"), c
        assert "escrowed True" in c["detail"], c
    assert rec["state"] == "passed", rec["findings"]


def test_an_upgrade_drill_needs_both_releases_installed(tmp_path):
    ran = h.run(tmp_path / "d", "upgrade-fails-halfway")
    rec = ran.record
    assert ran.exit_code == 76 and rec["state"] == "failed"
    assert any("no release to upgrade from" in f["text"] and "erpctl release install" in f["text"]
               for f in rec["findings"]), rec["findings"]
    assert rec["cleanup"]["ok"] and h.left_by(ran) == []


@pytest.mark.postgres
def test_a_drill_on_postgresql_uses_a_scratch_database_and_drops_it(tmp_path):
    reachable_pg_admin()
    ran = h.run(tmp_path / "pg", "erp-killed", "--backend", "postgresql", ERPCTL_DRILL_POSTGRESQL_URL=PG_ADMIN_URL)
    rec = ran.record
    assert rec["backend"] == "postgresql" and rec["state"] == "passed", rec["findings"]
    (serving,) = [e["detail"] for e in rec["timeline"] if e["event"] == "sandbox serving"]
    assert serving["database"].startswith("erpctl_drill_")
    from controlplane.drills.sandbox import database_exists
    assert not database_exists(PG_ADMIN_URL, serving["database"])
    assert h.left_by(ran) == [] and rec["measured"]["detection_seconds"] > 0


@pytest.mark.postgres
def test_database_corrupted_on_postgresql_recovers_through_its_runbook(tmp_path):
    """The table dropped while the workload writes (the injection waits out and retries the workload's
    locks), detected, restored by the DatabaseCorrupted runbook, the writes since the backup counted."""
    reachable_pg_admin()
    ran = h.run(tmp_path / "pg", "database-corrupted", "--backend", "postgresql",
                ERPCTL_DRILL_POSTGRESQL_URL=PG_ADMIN_URL)
    rec = ran.record
    assert rec["backend"] == "postgresql" and rec["state"] == "passed", rec["findings"]
    (fault,) = [e["detail"] for e in rec["timeline"] if e["phase"] == "fault"]
    assert fault["table"] == "accounts" and fault["attempts"] >= 1, fault
    assert rec["runbook"]["name"] == "DatabaseCorrupted" and rec["runbook"]["outcome"] == "recovered"
    m = rec["measured"]
    assert 0 < m["detection_seconds"] <= rec["objectives"]["detection_seconds"] and m["rpo_writes_lost"] > 0, m
    assert rec["cleanup"]["ok"] and h.left_by(ran) == []


def test_a_drill_whose_recovery_fails_is_failed_and_leaves_nothing(tmp_path):
    books = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS, books)
    (books / "DrillBroken.md").write_text(BROKEN_RUNBOOK)
    (books / "drills" / "recovery-fails.yaml").write_text(
        (books / "drills" / "erp-killed.yaml").read_text().replace("name: erp-killed", "name: recovery-fails")
        .replace("recover: {runbook: ErpDown}", "recover: {runbook: DrillBroken}"))
    ran = h.run(tmp_path / "d", "recovery-fails", "--runbooks-dir", str(books))
    rec = ran.record
    assert ran.exit_code == 76 and rec["state"] == "failed"
    assert rec["runbook"]["outcome"] == "failed" and rec["runbook"]["exit_code"] == 60
    assert any("DrillBroken did not recover" in f["text"] for f in rec["findings"]), rec["findings"]
    assert rec["cleanup"]["ok"] and h.left_by(ran) == []


def test_abort_stops_a_running_drill_and_runs_its_clean_up(tmp_path):
    data = tmp_path / "d"
    proc = h.start(data, "erp-hung")
    try:
        h.wait_for("the sandbox serving", lambda: (a := h.active(data)) is not None and a.erp_port and
                   h.sandbox_processes(a.sandbox))
        act = h.active(data)
        pids = h.sandbox_processes(act.sandbox)
        r = h.erpctl("drill", "abort", "--data-dir", str(data))
        assert r.returncode == 0 and act.id in r.stdout, r.stdout + r.stderr
        ran = h.finish(data, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    rec = ran.record
    assert rec["state"] == "aborted" and ran.exit_code == 76
    assert h.nothing_left(act, pids) == [] and h.active(data) is None


def test_a_killed_drill_is_cleaned_up_by_the_next_drill_command(tmp_path):
    data = tmp_path / "d"
    proc = h.start(data, "erp-killed")
    try:
        h.wait_for("the sandbox serving", lambda: (a := h.active(data)) is not None and a.erp_port and
                   h.sandbox_processes(a.sandbox))
        act = h.active(data)
        pids = h.sandbox_processes(act.sandbox)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert pids and h.sandbox_processes(act.sandbox), "the sandbox outlives its drill's process"
    r = h.erpctl("drill", "abort", "--data-dir", str(data), "--json")
    assert r.returncode == 0, r.stderr
    assert h.nothing_left(act, pids) == [] and h.active(data) is None
    rec = h.json.loads((data / "drills" / act.id / "record.json").read_text())
    assert rec["state"] == "aborted" and rec["cleanup"]["left_over"] == []
