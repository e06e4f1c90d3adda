"""The kill matrix: SIGKILL at every stage boundary, inside the migrations and at random points of the
backfill, and failing migrations. After each, `resume` and `rollback` both end at exactly 1.0 or
exactly 1.1: the catalogue of a fresh database of that release, no leftover objects, no lost or
changed row, clean invariants, maintenance mode off, the right release current."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from sqlalchemy import text

from controlplane import release
from controlplane.upgrade import catalogue as cat
from controlplane.upgrade import checks
from controlplane.upgrade import engine as upgrade_engine
from controlplane.upgrade import state as upgrade_state
from controlplane.evidence import EvidenceLog
from erp_core import backfill as erp_backfill
from erp_core.db import make_engine
from tests.controlplane.cli_helpers import erpctl_path
from tests.controlplane.cli_helpers import env as cli_env
from tests.controlplane.fault_helpers import seeded_rng

from .bulk import grow_draft_orders
from .conftest import NEW, OLD
from .test_upgrade import fresh_catalogue, old_columns_snapshot, site_catalogue

# Tables the upgrade itself writes to (maintenance switches are settings, and audited).
BOOKKEEPING = {"audit_log", "system_settings"}

BOUNDARIES = ["upgrade.after.preflight", "upgrade.after.backup", "upgrade.migration.expand", "upgrade.after.expand",
              "upgrade.backfill.batch", "upgrade.after.backfill", "upgrade.after.verify",
              "upgrade.switch.after_set_current", "upgrade.after.switch", "upgrade.migration.contract",
              "upgrade.after.contract"]
# Every case on SQLite; on PostgreSQL each boundary once, resume and rollback alternating.
CASES = ([pytest.param("sqlite", point, finish, id=f"sqlite-{point.split('upgrade.')[1]}-{finish}")
          for point in BOUNDARIES for finish in ("resume", "rollback")]
         + [pytest.param("postgres", point, finish, id=f"postgres-{point.split('upgrade.')[1]}-{finish}",
                         marks=pytest.mark.postgres)
            for i, point in enumerate(BOUNDARIES) for finish in [("resume", "rollback")[i % 2]]])

_catalogues: dict = {}


def expected_catalogue(site, version, tmp_path) -> dict:
    key = (site.backend, version)
    if key not in _catalogues:
        _catalogues[key] = fresh_catalogue(site, "head" if version == NEW else "0001", tmp_path)
    return _catalogues[key]


def apply_killed_at(site, point: str, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([erpctl_path(), "--json", "upgrade", "apply", "--offline", "--confirm-contract", *extra,
                           *site.args()], capture_output=True, text=True, timeout=600,
                          env=cli_env(**site.env, ERPCTL_FAILPOINTS=f"{point}=kill"))


def error_of(stderr: str) -> dict:
    """The typed error erpctl --json prints last on stderr (after its log lines)."""
    return next(json.loads(line) for line in reversed(stderr.splitlines()) if line.startswith('{"error"'))["error"]


def assert_exactly(site, version: str, before: dict, tmp_path) -> None:
    cat_now = site_catalogue(site)
    assert cat.diff(expected_catalogue(site, version, tmp_path), cat_now) == []
    assert cat.leftovers(cat_now) == []
    assert release.current(site.target).version == version
    old_cat = expected_catalogue(site, OLD, tmp_path)
    after = old_columns_snapshot(site, old_cat)
    problems = [p for p in checks.compare(before, after) if p["table"] not in BOOKKEEPING]
    assert problems == [], problems
    engine = make_engine(site.database_url)
    try:
        with engine.connect() as c:
            mode = c.execute(text("SELECT value FROM system_settings WHERE key = 'maintenance'")).scalar()
        assert mode is None or json.loads(mode)["enabled"] is False, mode
        if version == NEW:
            assert checks.run_invariants(engine) == []
    finally:
        engine.dispose()
    if version == OLD:  # erpctl erp check runs the current release's own invariants
        assert site.ok_json("erp", "check")["ok"] is True
    assert upgrade_engine.status(site.target)["status"] == "none"
    assert EvidenceLog(site.data_dir).verify()[1] == []


@pytest.mark.parametrize("site,point,finish", CASES, indirect=["site"])
def test_sigkill_at_a_stage_boundary_then_resume_or_rollback_ends_at_exactly_one_release(site, point, finish,
                                                                                       tmp_path):
    before = old_columns_snapshot(site, expected_catalogue(site, OLD, tmp_path))
    killed = apply_killed_at(site, point)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    st = upgrade_state.load(site.data_dir)
    assert st is not None and st.status == "running"
    if finish == "resume":
        r = site.ok_json("upgrade", "resume", "--offline", "--confirm-contract", timeout=600)
        assert r["status"] == "done", r
        assert_exactly(site, NEW, before, tmp_path)
    else:
        contracted = "contract" in st.completed
        args = ["--restore-backup"] if contracted else []
        if contracted:
            refused = site.erpctl("--json", "upgrade", "rollback", "--offline")
            assert refused.returncode == 46, refused.stdout + refused.stderr
            assert "lost" in error_of(refused.stderr)
        r = site.ok_json("upgrade", "rollback", "--offline", *args, timeout=600)
        assert r["status"] == "rolled_back", r
        assert_exactly(site, OLD, before, tmp_path)


@pytest.mark.parametrize("site,stage", [("sqlite", "expand"), ("sqlite", "backfill"), ("sqlite", "contract"),
                                        pytest.param("postgres", "expand", marks=pytest.mark.postgres),
                                        pytest.param("postgres", "contract", marks=pytest.mark.postgres)],
                         indirect=["site"])
def test_a_failing_migration_rolls_the_upgrade_back_by_itself(site, stage, tmp_path):
    before = old_columns_snapshot(site, expected_catalogue(site, OLD, tmp_path))
    r = subprocess.run([erpctl_path(), "--json", "upgrade", "apply", "--offline", "--confirm-contract",
                        *site.args()], capture_output=True, text=True, timeout=600,
                       env=cli_env(**site.env, ERPCTL_FAILPOINTS=f"upgrade.migration.{stage}=fail"))
    assert r.returncode == 44, r.stdout + r.stderr
    error = error_of(r.stderr)
    assert f"stage {stage}" in error["detail"] and "rolled back" in error["detail"]
    assert_exactly(site, OLD, before, tmp_path)
    assert site.ok_json("upgrade", "status")["last"]["status"] == "rolled_back"


def batches_committed(site) -> bool:
    engine = make_engine(site.database_url)
    try:
        with engine.connect() as c:
            if not engine.dialect.has_table(c, erp_backfill.PROGRESS_TABLE):
                return False
            return bool(c.execute(text(f"SELECT count(*) FROM {erp_backfill.PROGRESS_TABLE}")).scalar())
    finally:
        engine.dispose()


def pending_rows(site) -> dict[str, int]:
    engine = make_engine(site.database_url)
    try:
        with engine.connect() as c:
            return {b.name: erp_backfill.remaining(c, b) for b in erp_backfill.backfills()}
    finally:
        engine.dispose()


def test_sigkill_at_random_points_of_a_large_backfill_redoes_at_most_the_batch_in_flight(site, tmp_path):
    grow_draft_orders(site.database_url, 60_000 if site.backend == "sqlite" else 30_000)
    before = old_columns_snapshot(site, expected_catalogue(site, OLD, tmp_path))
    rng = seeded_rng(7)
    kills_inside = 0
    for attempt in range(6):  # the apply, then resumes, each killed at a random moment of the backfill
        command = "apply" if attempt == 0 else "resume"
        proc = subprocess.Popen([erpctl_path(), "--json", "upgrade", command, "--offline", "--confirm-contract",
                                 *site.args()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=cli_env(**site.env))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not batches_committed(site):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.kill()
        proc.wait()
        st = upgrade_state.load(site.data_dir)
        if st is None or st.stage != "backfill":
            break  # it got past the backfill before the kill
        pending = pending_rows(site)
        if sum(pending.values()):
            kills_inside += 1
        if kills_inside == 2:
            break
    assert kills_inside >= 1, "no kill landed inside the backfill"
    st = upgrade_state.load(site.data_dir)
    left = pending_rows(site) if st.stage == "backfill" else None
    r = site.ok_json("upgrade", "resume", "--offline", "--confirm-contract", timeout=600)
    assert r["status"] == "done", r
    if left is not None:
        # the resumed run filled exactly what was pending after the kill, nothing before the checkpoint again:
        # the batch in flight was rolled back with its checkpoint, so it is the only work done twice
        resumed = {b["name"]: b["rows_done"] for b in r["backfill"]["backfills"]}
        assert resumed == {name: n for name, n in left.items() if name in resumed}, (resumed, left)
        assert sum(resumed.values()) == sum(left.values())
    assert_exactly(site, NEW, before, tmp_path)
