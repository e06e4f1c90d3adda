"""The verification ladder (controlplane/backup/verify.py, `erpctl backup verify`) on SQLite,
PostgreSQL and S3: every level passes on a sound backup and is recorded with its duration; a
corrupted chunk is named with every backup that needs it; a backup whose data breaks an invariant
fails L3 naming the invariant; a table that differs from the manifest is named; the scheduled jobs
run. Fault tests end with the real `erpctl backup verify` and `erpctl evidence verify` telling the
truth."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from controlplane import results
from controlplane.backup import verify as V
from controlplane.backup.pack import pack_key
from controlplane.backup.repository import open_repository
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import erpctl

from .conftest import FAST_KDF, PASSPHRASE


# ---- helpers shared with test_restore.py ---------------------------------------------------------

def new_repo(url: str, data_dir: Path | None = None):
    return open_repository(url, passphrase=PASSPHRASE, create=True, kdf=FAST_KDF, data_dir=data_dir)


def cli(target, repo_url: str, *args, timeout: float = 300):
    """The real erpctl on this target and repository (JSON output)."""
    return erpctl("--json", *args, "--data-dir", target.data_dir, "--database-url", target.database_url,
                  "--repo", repo_url, timeout=timeout, ERPCTL_BACKUP_PASSPHRASE=PASSPHRASE)


def cli_json(r) -> dict:
    return json.loads(r.stdout)


def evidence_ok(target) -> dict:
    """`erpctl evidence verify` on the target's data directory must say the chain is intact."""
    r = erpctl("--json", "evidence", "verify", "--data-dir", target.data_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["records"] >= 1
    return out


def corrupt_shared_chunk(repo, a, b) -> str:
    """Flip one byte inside a chunk that backups a and b both need, in its pack on disk; the chunk id."""
    repo.load_index()
    shared = [c for c in a.chunks if c in set(b.chunks)]
    assert shared, "the two backups share no chunk"
    cid = shared[len(shared) // 2]
    loc = repo.index[bytes.fromhex(cid)]
    path = Path(repo.store.root) / pack_key(loc.pack)
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    return cid


def break_stock(target) -> str:
    """Raw SQL behind the ERP's back: one on-hand quantity no longer equals its done moves."""
    engine = create_engine(target.database_url)
    with engine.begin() as c:
        row = c.execute(text("SELECT product_id, warehouse_id FROM stock_levels ORDER BY product_id, warehouse_id "
                             "LIMIT 1")).one()
        c.execute(text("UPDATE stock_levels SET quantity = quantity + 7 WHERE product_id = :p AND warehouse_id = :w"),
                  {"p": row.product_id, "w": row.warehouse_id})
    engine.dispose()
    return "on_hand_matches_moves"


# the key of a fingerprint that is only compared with another one taken here (a manifest's is keyed
# with its repository's id key: pass the repository)
OWN_KEY = b"a fingerprint key of the tests 32"


def live_fingerprint(target, repo=None) -> dict:
    from controlplane.backup.fingerprint import fingerprint

    engine = create_engine(target.database_url)
    try:
        with engine.connect() as c:
            return fingerprint(c, key=repo.fingerprint_key if repo is not None else OWN_KEY)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_target(request):
    return request.getfixturevalue("seeded_target" if request.param == "sqlite" else "pg_seeded_target")


# ---- a sound backup passes every level -----------------------------------------------------------

def test_sound_backup_passes_every_level_and_each_is_recorded(any_target, file_repo_url):
    repo = new_repo(file_repo_url, any_target.data_dir)
    m = repo.create_backup(any_target)
    v = V.verify_backup(repo, m.id, 4, target=any_target)
    assert v.ok, v.as_dict()
    assert [l.level for l in v.levels] == [1, 2, 3, 4]
    assert all(l.duration_seconds > 0 for l in v.levels)
    l1, l2, l3, l4 = v.levels
    assert l1.facts["chunks_checked"] >= m.chunk_count // 2
    # the chunks are opened once: L1 is the materialization of the copy L2 then checks
    assert l1.facts["how"].startswith("while materializing") and l2.facts["materialized_at_l1"] is True
    assert l3.facts["rows"] == sum(t["rows"] for t in m.tables.values())
    assert l4.facts["sampled"]["sales_orders"] == 5 and l4.facts["sampled"]["invoices"] == 5

    latest = results.read(any_target.data_dir)
    for n in (1, 2, 3, 4):
        entry = latest[f"backup.verify.L{n}"]
        assert entry.ok and entry.value("backup") == m.id and entry.value("duration") > 0
    rec = [r for r in EvidenceLog(any_target.data_dir).records() if r["kind"] == "backup.verify"][-1]
    assert rec["outcome"] == "ok" and rec["data"]["backup"] == m.id and rec["data"]["passed_level"] == 4
    assert [l["level"] for l in rec["data"]["levels"]] == [1, 2, 3, 4]
    assert all(l["duration_seconds"] > 0 for l in rec["data"]["levels"])
    alone = V.verify_backup(repo, m.id, 1, target=any_target).levels  # L1 alone: the chunk-by-chunk check
    assert alone[0].ok and "how" not in alone[0].facts
    assert alone[0].facts["chunks_checked"] == l1.facts["chunks_checked"]

    if any_target.backend == "postgresql":  # the scratch database is gone
        engine = create_engine(any_target.database_url)
        with engine.connect() as c:
            left = c.execute(text("SELECT count(*) FROM pg_database WHERE datname LIKE 'erp_verify_%'")).scalar()
        engine.dispose()
        assert left == 0
    else:
        assert not list((any_target.data_dir / "scratch").iterdir())

    r = cli(any_target, file_repo_url, "backup", "verify", m.id[:10], "--level", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    out = cli_json(r)
    assert out["ok"] and out["backups"][0]["passed_level"] == 2
    evidence_ok(any_target)


def test_level_option_runs_only_the_levels_asked_for(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    v = V.verify_backup(repo, m.id, 1, target=seeded_target)
    assert v.ok and [l.level for l in v.levels] == [1]
    assert "backup.verify.L2" not in results.read(seeded_target.data_dir)


# ---- a corrupted chunk -----------------------------------------------------------------------------

def test_corrupted_chunk_is_named_with_every_backup_that_needs_it(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    first = repo.create_backup(seeded_target)
    second = repo.create_backup(seeded_target)
    engine = create_engine(seeded_target.database_url)  # a third backup that differs a little
    with engine.begin() as c:
        c.execute(text("UPDATE partners SET address = 'moved' WHERE id = (SELECT min(id) FROM partners)"))
    engine.dispose()
    repo.create_backup(seeded_target)
    chunk = corrupt_shared_chunk(repo, first, second)

    v = V.verify_backup(repo, first.id, 4, target=seeded_target)
    assert not v.ok and [l.level for l in v.levels] == [1], "the ladder stops at the first failure"
    bad = [p for p in v.levels[0].problems if p["chunk"] == chunk]
    assert bad, v.levels[0].problems
    assert first.id in bad[0]["backups"] and second.id in bad[0]["backups"]
    assert bad[0]["pack"] and "authentication" in bad[0]["reason"]
    assert chunk in v.levels[0].summary
    assert results.read(seeded_target.data_dir)["backup.verify.L1"].ok is False

    # the real command tells the truth about both backups, with a distinct exit code
    r = cli(seeded_target, file_repo_url, "backup", "verify", first.id, second.id, "--level", "3")
    assert r.returncode == 28, r.stdout + r.stderr
    out = cli_json(r)
    assert not out["ok"] and [b["failed_level"] for b in out["backups"]] == [1, 1]
    for b in out["backups"]:
        named = [p for p in b["levels"][0]["problems"] if p["chunk"] == chunk][0]
        assert {first.id, second.id} <= set(named["backups"])
    human = erpctl("backup", "verify", first.id[:8], "--level", "1", "--data-dir", seeded_target.data_dir,
                   "--repo", file_repo_url, ERPCTL_BACKUP_PASSPHRASE=PASSPHRASE)
    assert human.returncode == 28 and chunk in human.stdout and second.id in human.stdout
    evidence_ok(seeded_target)


def test_corrupted_object_in_s3_is_named(seeded_target, moto_s3):
    repo = new_repo(moto_s3["url"], seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    ok = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert ok.ok, ok.as_dict()
    repo.load_index()
    cid = m.chunks[len(m.chunks) // 3]
    loc = repo.index[bytes.fromhex(cid)]
    s3 = moto_s3["server"].client()
    key = f"repo/{pack_key(loc.pack)}"
    body = bytearray(s3.get_object(Bucket=moto_s3["bucket"], Key=key)["Body"].read())
    body[loc.offset + 3] ^= 0xFF
    s3.put_object(Bucket=moto_s3["bucket"], Key=key, Body=bytes(body))

    v = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert not v.ok and v.failed.level == 1
    assert any(p["chunk"] == cid and m.id in p["backups"] for p in v.failed.problems)
    r = cli(seeded_target, moto_s3["url"], "backup", "verify", "latest", "--level", "1")
    assert r.returncode == 28 and cid in r.stdout
    evidence_ok(seeded_target)


# ---- a backup whose data breaks an invariant -------------------------------------------------------

def test_backup_breaking_an_invariant_fails_L3_naming_it(any_target, file_repo_url):
    invariant = break_stock(any_target)
    repo = new_repo(file_repo_url, any_target.data_dir)
    m = repo.create_backup(any_target)
    assert m.invariants is None, "not checked at capture: L3 is what refuses it"

    v = V.verify_backup(repo, m.id, 4, target=any_target)
    assert not v.ok and [l.ok for l in v.levels] == [True, True, False]
    l3 = v.failed
    named = [p for p in l3.problems if p["what"] == "invariant"]
    assert named and {p["invariant"] for p in named} == {invariant}
    assert invariant in l3.summary
    assert not [p for p in l3.problems if p["what"] == "table"], "the copy still equals its manifest"

    r = cli(any_target, file_repo_url, "backup", "verify", "--all-latest")
    assert r.returncode == 28, r.stdout + r.stderr
    out = cli_json(r)
    assert out["backups"][0]["failed_level"] == 3 and invariant in out["backups"][0]["failure"]
    evidence_ok(any_target)


class _ManifestLies:
    """The repository with one table's checksum changed in what the manifest says (as if the data
    restored were not the data captured)."""

    def __init__(self, repo, table):
        self.repo, self.table = repo, table

    def __getattr__(self, name):
        return getattr(self.repo, name)

    def load_manifest(self, backup_id):
        m = self.repo.load_manifest(backup_id)
        m.tables = {**m.tables, self.table: {**m.tables[self.table], "checksum": "0" * 16}}
        return m


def test_table_differing_from_the_manifest_is_named(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    v = V.verify_backup(_ManifestLies(repo, "journal_lines"), m.id, 3, target=seeded_target)
    assert not v.ok and v.failed.level == 3
    assert [p["table"] for p in v.failed.problems if p["what"] == "table"] == ["journal_lines"]
    assert "journal_lines" in v.failed.summary


def test_corrupt_index_page_in_the_source_fails_L2(seeded_target, file_repo_url):
    """Damage that the source carried into the backup: the chunks are sound (L1), the engine's own
    check is not (L2)."""
    path = seeded_target.sqlite_path
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'ix_audit_log_at'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as f:  # one byte of an index key, in the middle of the page's cells
        f.seek((root - 1) * page_size)
        page = bytearray(f.read(page_size))
        cells = int.from_bytes(page[5:7], "big") or 65536
        page[(cells + page_size) // 2] ^= 0xFF
        f.seek((root - 1) * page_size)
        f.write(page)
    repo = new_repo(file_repo_url, seeded_target.data_dir)
    m = repo.create_backup(seeded_target)
    v = V.verify_backup(repo, m.id, 3, target=seeded_target)
    assert not v.ok and v.failed.level == 2, v.as_dict()
    assert any(p["check"] == "integrity_check" for p in v.failed.problems)


def test_unknown_backup_is_a_typed_error(seeded_target, file_repo_url):
    new_repo(file_repo_url, seeded_target.data_dir).create_backup(seeded_target)
    r = cli(seeded_target, file_repo_url, "backup", "verify", "ffffffffff")
    assert r.returncode == 25 and "ffffffffff" in r.stderr


# ---- scheduled under `erpctl up` ------------------------------------------------------------------

def test_scheduled_backup_verify_and_restore_test_jobs(seeded_target, file_repo_url, monkeypatch):
    from controlplane.scheduler import JobContext, Scheduler

    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", PASSPHRASE)
    new_repo(file_repo_url, seeded_target.data_dir)
    settings = {"backup": {"repo": file_repo_url, "verify_level": 2, "restore_test_level": 4,
                           "retention": {"keep_last": 1}},
                "schedule": {"backup.create": "cron:15 1 * * *"}}
    ctx = JobContext(seeded_target, "http://127.0.0.1:9", settings=settings, environ=dict(__import__("os").environ))
    sched = Scheduler(ctx, providers=["controlplane.backup.schedule"])
    planned = {p.job.id: p for p in sched.planned}
    assert planned["backup.create"].schedule == "cron:15 1 * * *"
    assert planned["backup.verify"].trigger is not None and planned["backup.prune"].trigger is not None
    sched.run_now("backup.create")
    sched.run_now("backup.create")
    sched.run_now("backup.verify")
    sched.run_now("backup.restore_test")
    sched.run_now("backup.prune")
    r = results.read(seeded_target.data_dir)
    for key in ("scheduler.backup.create", "scheduler.backup.verify", "scheduler.backup.restore_test",
                "scheduler.backup.prune", "backup.verify.L2", "backup.restore_test", "backup.verify.L4"):
        assert r[key].ok, (key, r[key])
    assert r["backup.restore_test"].value("duration") > 0
    assert len(open_repository(file_repo_url, passphrase=PASSPHRASE).list_manifests()) == 1
    evidence_ok(seeded_target)


def test_l4_names_every_field_a_served_document_gets_wrong():
    stored = {"number": "SO-1", "state": "confirmed", "net_total": "10.00", "tax_total": "1.30",
              "gross_total": "11.30", "lines": [(7, "10.00", "1.30")]}
    served = {"number": "SO-1", "state": "draft", "net_total": "10.0", "tax_total": "1.31", "gross_total": "11.30",
              "lines": [{"id": 7, "net_amount": "10.00", "tax_amount": "1.31"}]}
    assert V._order_diffs(served, stored) == ["state 'draft' != 'confirmed'", "tax_total 1.31 != 1.30",
                                              "lines differ (1 served, 1 stored)"]
    assert V._order_diffs({**served, "state": "confirmed", "tax_total": "1.30",
                           "lines": [{"id": 7, "net_amount": "10", "tax_amount": "1.3"}]}, stored) == []
