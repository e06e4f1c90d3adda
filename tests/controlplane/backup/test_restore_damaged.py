"""A restore works whatever state the live database is in: a SQLite file with a damaged table page or
cut short (the loss report says what it could not read, the restore is not refused for the damage it
repairs), and an empty PostgreSQL database on a new machine (no ERP schema at all). The real erpctl,
real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3

from sqlalchemy import create_engine, text

from controlplane.backup import restore as R
from controlplane.config import Target
from controlplane.evidence import EvidenceLog
from tests.conftest import clone_pg_database

from .test_verify import cli, cli_json, evidence_ok, new_repo

DAMAGE = b"\xde\xad\xbe\xef" * 1024


def _damage_table(path, table: str) -> int:
    """The root page of `table` overwritten with garbage, as a failing disk leaves it; its page number."""
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = c.execute("PRAGMA page_size").fetchone()[0]
        (page,) = c.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, DAMAGE[:size], (page - 1) * size)
    finally:
        os.close(fd)
    return page


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return c.execute(text(f'SELECT count(*) FROM "{table}"')).scalar()
    finally:
        engine.dispose()


def _integrity(target) -> list:
    try:
        with sqlite3.connect(target.sqlite_path) as c:
            return [r[0] for r in c.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:  # the damage stops the check itself
        return [str(exc)]


def test_a_damaged_table_page_is_restored_over_and_the_report_names_what_it_could_not_read(
        seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    partners = _count(seeded_target.database_url, "partners")
    _damage_table(seeded_target.sqlite_path, "partners")
    assert _integrity(seeded_target) != ["ok"]

    dry = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listing = cli_json(dry)
    assert listing["in_place"] and listing["count"] == 0, listing  # the audit log is intact: nothing since

    r = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--yes", "--discard-writes", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    loss = cli_json(r)["loss"]
    unreadable = " ".join(loss["unreadable"])
    assert "partners" in unreadable and "malformed" in unreadable, loss
    assert _integrity(seeded_target) == ["ok"]
    assert _count(seeded_target.database_url, "partners") == partners
    kept = json.loads(open(loss["list_file"]).read())
    assert kept["unreadable"] == loss["unreadable"]
    (rec,) = [e for e in EvidenceLog(seeded_target.data_dir).records() if e["kind"] == "backup.restore"]
    assert rec["data"]["loss_window"]["unreadable"] == loss["unreadable"]
    evidence_ok(seeded_target)


def test_a_damaged_audit_log_cannot_be_counted_and_the_restore_still_runs_when_confirmed(
        seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    _damage_table(seeded_target.sqlite_path, "audit_log")

    dry = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listing = cli_json(dry)
    assert listing["count"] is None and "audit log" in " ".join(listing["unreadable"]), listing

    refused = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--yes")
    assert refused.returncode == 31, refused.stdout + refused.stderr
    assert "cannot be counted" in refused.stderr and R.read_state(seeded_target) is None

    r = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--yes", "--discard-writes", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert cli_json(r)["loss"]["discarded"] is None
    assert _integrity(seeded_target) == ["ok"]


def test_a_live_file_cut_short_is_restored_over(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    orders = _count(seeded_target.database_url, "sales_orders")
    size = seeded_target.sqlite_path.stat().st_size
    os.truncate(seeded_target.sqlite_path, size // 3)

    dry = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    r = cli(seeded_target, file_repo_url, "backup", "restore", m.id, "--yes", "--discard-writes", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert cli_json(r)["loss"]["unreadable"], "what it could not read is said"
    assert _integrity(seeded_target) == ["ok"]
    assert _count(seeded_target.database_url, "sales_orders") == orders


def test_a_restore_into_an_empty_postgresql_database_on_a_new_machine(pg_seeded_target, file_repo_url,
                                                                      tmp_path, request):
    repo = new_repo(file_repo_url, pg_seeded_target.data_dir)
    m = repo.create_backup(pg_seeded_target)
    orders = _count(pg_seeded_target.database_url, "sales_orders")
    empty = clone_pg_database(None, "erp_new", request)
    data = tmp_path / "new-machine"
    data.mkdir()
    (data / "field.key").write_bytes((pg_seeded_target.data_dir / "field.key").read_bytes())
    new = Target(data, empty.replace("postgresql://", "postgresql+psycopg://"))

    dry = cli(new, file_repo_url, "backup", "restore", m.id, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert cli_json(dry)["count"] == 0
    r = cli(new, file_repo_url, "backup", "restore", m.id, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _count(new.database_url, "sales_orders") == orders
    from erp_core import ops
    assert ops.switch_maintenance(new.database_url)["enabled"] is False
