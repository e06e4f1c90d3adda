"""The preflight refuses with a clear reason, and changes nothing: the database stays at 1.0's schema,
release 1.0 stays current, no upgrade is left in progress."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time

import pytest
from sqlalchemy import text

from controlplane import release
import erp_core
from controlplane.upgrade import preflight, run
from controlplane.upgrade import state as upgrade_state
from erp_core.db import current_revision, make_engine
from tests.controlplane.cli_helpers import free_ports, need

from .conftest import OLD, Site
from .test_kill_matrix import error_of


def refused(site, *args, code: int = 43) -> dict:
    r = site.erpctl("--json", "upgrade", "apply", "--confirm-contract", *args, timeout=300)
    assert r.returncode == code, r.stdout + r.stderr
    engine_ = make_engine(site.database_url)
    try:
        assert current_revision(engine_) == "0001"
    finally:
        engine_.dispose()
    assert release.current(site.target).version == OLD
    assert upgrade_state.load(site.data_dir) is None
    return error_of(r.stderr)


def failed_checks(error: dict) -> dict:
    return {c["check"]: c for c in error.get("checks", []) if not c["ok"]}


def test_an_erp_that_does_not_answer_is_refused(site):
    port = free_ports(1)[0]
    error = refused(site, "--erp-url", f"http://127.0.0.1:{port}")
    check = failed_checks(error)["ERP healthy"]
    assert "did not answer" in check["detail"] and "--offline" in check["fix"]


def test_broken_books_are_refused(site):
    engine_ = make_engine(site.database_url)
    with engine_.begin() as c:  # a journal entry whose one line has no counterpart
        c.execute(text("INSERT INTO journal_entries (number, date, memo, source, created_at, created_by) "
                       "VALUES ('JE-BROKEN', '2026-01-01', 'broken', 'test', '2026-01-01 00:00:00', 'test')"))
        entry = c.execute(text("SELECT id FROM journal_entries WHERE number = 'JE-BROKEN'")).scalar()
        c.execute(text("INSERT INTO journal_lines (entry_id, account_code, debit, credit) "
                       "VALUES (:e, '1002', 10, 0)"), {"e": entry})
    engine_.dispose()
    check = failed_checks(refused(site, "--offline"))["invariants"]
    assert "journal_entries_balance" in check["detail"] and "erpctl erp check" in check["fix"]


def test_another_upgrade_operation_running_is_refused(site):
    lock = site.data_dir / "upgrade" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("4242")
        f.flush()
        error = refused(site, "--offline", code=42)
    assert "another upgrade operation is running" in error["detail"]


def test_no_backup_repository_is_refused(site):
    shutil.rmtree(site.data_dir / "backups")
    check = failed_checks(refused(site, "--offline"))["backup possible"]
    assert "no fresh verified backup can be taken" in check["detail"]


def test_too_little_disk_for_backup_and_migration_is_refused(tmp_path, release_store):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        need(f"cannot mount a small tmpfs for the disk test (needs root): {r.stderr.strip()}")
    try:
        from .conftest import FIELD_KEY, FIXTURE_DB, NEW, PASSPHRASE

        data = mnt / "data"
        (data / "releases").mkdir(parents=True)
        for version in (OLD, NEW):
            (data / "releases" / version).symlink_to(release_store / version)
        shutil.copy(FIXTURE_DB, data / "erp.sqlite3")
        site = Site(data, f"sqlite:///{data / 'erp.sqlite3'}", "sqlite",
                    env={"ERP_FIELD_KEY": FIELD_KEY, "ERPCTL_BACKUP_PASSPHRASE": PASSPHRASE})
        release.set_current(site.target, OLD)
        site.ok("backup", "init", "--kdf-memory", "8192", "--repo", f"file://{tmp_path / 'repo'}")
        check = failed_checks(refused(site, "--offline", "--repo", f"file://{tmp_path / 'repo'}"))["free disk"]
        assert "MiB free" in check["detail"] and "needed" in check["detail"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_changed_migration_is_refused(site, monkeypatch):
    real = run.bundled_checksums()
    monkeypatch.setattr(preflight, "bundled_checksums", lambda: {**real, "0001": "0" * 64})
    ctx = run.Run(run.UpgradeOptions(target=site.target), upgrade_state.new(to_version=erp_core.__version__))
    try:
        results = {r["check"]: r for r in preflight.preflight(ctx)}
    finally:
        ctx.close()
    check = results["migration checksums"]
    assert not check["ok"] and "0001 differs between release 1.0.0 and this erpctl" in check["detail"]
    assert "new migration" in check["fix"]


@pytest.mark.postgres
@pytest.mark.parametrize("site", ["postgres"], indirect=True)
def test_a_long_running_transaction_is_refused_on_postgresql(site):
    hold = make_engine(site.database_url)
    conn = hold.connect()
    conn.execute(text("SELECT count(*) FROM sales_orders"))  # the transaction stays open, idle in transaction
    try:
        time.sleep(2.5)
        check = failed_checks(refused(site, "--offline", "--long-transaction-seconds", "2"))["no long transactions"]
        assert "open for" in check["detail"] and "pg_terminate_backend" in check["fix"]
    finally:
        conn.close()
        hold.dispose()
