"""Per-table fingerprints (controlplane/backup/fingerprint.py) and what L3 does with them: a row
changed in a restored copy is caught and its table named, on SQLite (sqlite-pages-v1) and
PostgreSQL (rows); the fingerprint of a live database equals that of its restored copy; backups
whose manifest predates the method field (rows, on SQLite too) still verify and restore; a method
this erpctl does not know fails L3 instead of passing it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from controlplane.backup import fingerprint as fp
from controlplane.backup import restore as R
from controlplane.backup import verify as V
from controlplane.backup.chunker import sqlite_page_size

from .test_verify import new_repo

TAMPER = "UPDATE sales_orders SET notes = 'tampered after the backup' WHERE id = (SELECT min(id) FROM sales_orders)"


def sqlite_live(path, key) -> dict:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as c:
            return fp.fingerprint(c, key=key)
    finally:
        engine.dispose()


def table_problems(v) -> list[str]:
    return sorted(p["table"] for p in v.failed.problems if p["what"] == "table")


# ---- SQLite: sqlite-pages-v1 ---------------------------------------------------------------------

def test_new_sqlite_backups_use_the_page_method(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    assert m.fingerprint_method == fp.SQLITE_PAGES
    assert repo.load_manifest(m.id).fingerprint_method == fp.SQLITE_PAGES  # stored, not just returned
    assert m.summary()["fingerprint_method"] == fp.SQLITE_PAGES
    rows = {t: v["rows"] for t, v in m.tables.items()}
    c = sqlite3.connect(seeded_target.sqlite_path)
    try:
        assert rows == {t: c.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in rows}
    finally:
        c.close()
    assert "alembic_version" not in m.tables and rows["sales_orders"] > 100
    assert len({v["checksum"] for v in m.tables.values() if v["rows"]}) == len([1 for v in rows.values() if v])


def test_live_database_and_its_restored_copy_have_one_fingerprint(seeded_target, file_repo_url, tmp_path):
    # leave committed pages in the -wal (no checkpoint): the live fingerprint must count them
    c = sqlite3.connect(seeded_target.sqlite_path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA wal_autocheckpoint=0")
    c.execute("UPDATE partners SET address = 'moved, only in the -wal' WHERE id = (SELECT max(id) FROM partners)")
    c.commit()
    assert (seeded_target.sqlite_path.parent / "erp.sqlite3-wal").stat().st_size > 0
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    live = sqlite_live(seeded_target.sqlite_path, repo.fingerprint_key)
    # the file alone (its -wal left out) is another database: its partners table differs
    stale = tmp_path / "stale.sqlite3"
    stale.write_bytes(seeded_target.sqlite_path.read_bytes())
    c.close()  # the last connection: folds the -wal into the file
    with open(stale, "r+b") as f:  # as a rollback-journal file, so it is read as it is
        f.seek(18)
        f.write(b"\x01\x01")
    art = repo.materialize(m.id, tmp_path / "out")
    restored = fp.sqlite_file_fingerprint(art.path, repo.fingerprint_key)
    assert live == restored == m.tables
    assert sqlite_live(seeded_target.sqlite_path, repo.fingerprint_key) == m.tables
    differs = fp.compare(m.tables, fp.sqlite_file_fingerprint(stale, repo.fingerprint_key))
    assert [d.split(":")[0] for d in differs] == ["table partners"]


def test_checksums_from_chunk_ids_equal_checksums_from_the_pages(seeded_target, file_repo_url, tmp_path):
    """A backup takes a table's checksum from the chunk ids (a chunk is one page); computed from the
    pages themselves it is the same. With chunks of two pages the pages are hashed on their own."""
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    page = seeded_target.sqlite_path.read_bytes()[4096:8192]
    assert fp.page_digest(page, repo.fingerprint_key) == repo.sealer.chunk_id(page)
    assert m.tables == sqlite_live(seeded_target.sqlite_path, repo.fingerprint_key)

    two = new_repo(f"file://{tmp_path / 'two-page-chunks'}", seeded_target.data_dir)
    two.config["sqlite_min_chunk"] = 2 * sqlite_page_size(seeded_target.sqlite_path)
    m2 = two.create_backup(seeded_target)
    assert m2.chunk_count * 2 >= m.chunk_count - 1
    assert m2.tables == sqlite_live(seeded_target.sqlite_path, two.fingerprint_key)
    assert m2.tables != m.tables  # keyed with each repository's own id key
    assert {t: v["rows"] for t, v in m2.tables.items()} == {t: v["rows"] for t, v in m.tables.items()}


def _tamper_sqlite_copy(monkeypatch, sql: str) -> None:
    materialize = V.Ladder._materialize

    def tampered(self):
        path = materialize(self)
        c = sqlite3.connect(path)
        try:
            c.execute(sql)
            c.commit()
        finally:
            c.close()
        return path

    monkeypatch.setattr(V.Ladder, "_materialize", tampered)


def test_row_changed_in_the_restored_sqlite_copy_fails_L3_naming_the_table(seeded_target, file_repo_url,
                                                                         monkeypatch):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    assert V.verify_backup(repo, m.id, 3, target=seeded_target).ok
    _tamper_sqlite_copy(monkeypatch, TAMPER)
    v = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert not v.ok and v.failed.level == 3 and v.levels[1].ok  # a valid database: L2 cannot tell
    assert table_problems(v) == ["sales_orders"]
    assert "same row count" in v.failed.problems[0]["detail"] and "sales_orders" in v.failed.summary
    assert v.failed.facts["fingerprint_method"] == fp.SQLITE_PAGES


def test_row_deleted_in_the_restored_sqlite_copy_names_the_table_and_counts(seeded_target, file_repo_url,
                                                                          monkeypatch):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    _tamper_sqlite_copy(monkeypatch, "DELETE FROM price_list_items WHERE id = (SELECT max(id) FROM price_list_items)")
    v = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert not v.ok and table_problems(v) == ["price_list_items"]
    rows = m.tables["price_list_items"]["rows"]
    assert f"{rows - 1} rows restored, {rows} in the manifest" in json.dumps(v.failed.problems)


# ---- PostgreSQL: rows, in the server ---------------------------------------------------------------

@pytest.mark.postgres
def test_pg_live_database_and_its_restored_copy_have_one_fingerprint(pg_seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url, pg_seeded_target.data_dir)
    m = repo.create_backup(pg_seeded_target)
    assert m.fingerprint_method == fp.ROWS
    engine = create_engine(pg_seeded_target.database_url)
    with engine.connect() as c:
        live = fp.fingerprint(c)
    engine.dispose()
    ladder = V.Ladder(repo, m.id, workdir=tmp_path / "work", server_url=pg_seeded_target.database_url,
                      keep_copy=True)
    try:
        assert all(l.ok for l in ladder.run(2))
        engine = create_engine(ladder.copy.database_url)
        with engine.connect() as c:
            restored = fp.fingerprint(c)
        engine.dispose()
    finally:
        ladder.keep_copy = False
        ladder.close()
    assert live == restored == m.tables


@pytest.mark.postgres
def test_row_changed_in_the_restored_pg_copy_fails_L3_naming_the_table(pg_seeded_target, file_repo_url,
                                                                     monkeypatch):
    repo = new_repo(file_repo_url, pg_seeded_target.data_dir)
    m = repo.create_backup(pg_seeded_target)
    restore = V.Ladder._pg_restore

    def tampered(self, dump, facts):
        problems = restore(self, dump, facts)
        engine = create_engine(self.copy.database_url)
        with engine.begin() as c:
            c.execute(text(TAMPER))
        engine.dispose()
        return problems

    monkeypatch.setattr(V.Ladder, "_pg_restore", tampered)
    v = V.verify_backup(repo, m.id, 3, target=pg_seeded_target)
    assert not v.ok and v.failed.level == 3 and table_problems(v) == ["sales_orders"]
    assert v.failed.facts["fingerprint_method"] == fp.ROWS


# ---- manifests of the previous format, and of a newer one ----------------------------------------

def _rewrite_manifest(repo, backup_id: str, change) -> None:
    key, aad = f"snapshots/{backup_id}", b"manifest:" + backup_id.encode()
    stored = repo._get_sealed(key, aad)
    change(stored)
    repo._put_sealed(key, stored, aad)


def _as_previous_format(repo, m, target):
    """The manifest as erpctl wrote it before fingerprint methods: no method field, and the `rows`
    fingerprint of the same data (nothing wrote to the database since the backup)."""
    engine = create_engine(target.database_url)
    with engine.connect() as c:
        legacy = fp.fingerprint(c, fp.ROWS)
    engine.dispose()

    def change(stored):
        del stored["fingerprint_method"]
        stored["tables"] = legacy

    _rewrite_manifest(repo, m.id, change)
    return legacy


def test_backup_of_the_previous_format_still_verifies_and_restores(seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    legacy = _as_previous_format(repo, m, seeded_target)
    old = repo.load_manifest(m.id)
    assert old.fingerprint_method == fp.ROWS and old.tables == legacy != m.tables
    v = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert v.ok, v.as_dict()
    assert v.levels[2].facts["fingerprint_method"] == fp.ROWS
    out = R.restore(seeded_target, repo, m.id, into=tmp_path / "inspect")
    assert out["ok"] and out["verification"]["levels"][2]["facts"]["fingerprint_method"] == fp.ROWS
    assert fp.sqlite_file_fingerprint(Path(out["path"]), method=fp.ROWS) == legacy


def test_backup_of_the_previous_format_still_names_a_changed_table(seeded_target, file_repo_url, monkeypatch):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    _as_previous_format(repo, m, seeded_target)
    _tamper_sqlite_copy(monkeypatch, TAMPER)
    v = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert not v.ok and table_problems(v) == ["sales_orders"]


def test_unknown_fingerprint_method_fails_L3(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    _rewrite_manifest(repo, m.id, lambda stored: stored.update(fingerprint_method="sqlite-pages-v99"))
    v = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert not v.ok and v.failed.level == 3
    assert "unknown fingerprint method 'sqlite-pages-v99'" in v.failed.summary
