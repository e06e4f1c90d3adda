"""The backup repository API on SQLite, PostgreSQL and S3 (moto's server over HTTP): capture,
store, dedup, L1 chunk check, materialize, prune, locks, resumption, keys."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from controlplane import results
from controlplane.backup import lock as lockmod
from controlplane.backup import verify
from controlplane.backup.fingerprint import fingerprint
from controlplane.backup.pack import pack_key
from controlplane.backup.repository import Manifest, open_repository
from controlplane.backup.retention import RetentionPolicy
from controlplane.errors import BackupNotFound, ChunkCorrupt, DataDirProblem, RepositoryLocked, RepositoryNotInitialised, WrongKey
from controlplane.evidence import EvidenceLog
from tests.conftest import Erp

from .conftest import FAST_KDF, scatter_update

CONTRACT_FIELDS = {"id", "created_at", "engine", "format", "size_bytes", "chunk_count", "bytes_added",
                   "schema_revision", "erp_version", "duration_seconds", "source", "tables", "invariants", "chunks"}


def new_repo(url, **kw):
    kw.setdefault("passphrase", "pw")
    return open_repository(url, create=True, kdf=FAST_KDF, **kw)


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def sqlite_fingerprint(path: Path, repo) -> dict:
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with engine.connect() as c:
            return fingerprint(c, key=repo.fingerprint_key)
    finally:
        engine.dispose()


# ---- SQLite on a directory ---------------------------------------------------------------------

def test_sqlite_backup_roundtrip(seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url)
    m = repo.create_backup(seeded_target)
    d = m.as_dict()
    assert CONTRACT_FIELDS <= set(d)
    assert d["engine"] == "sqlite" and d["schema_revision"] and d["invariants"] is None  # L3 checks them
    assert d["tables"]["sales_orders"]["rows"] > 100 and d["chunk_count"] == len(d["chunks"])
    assert d["source"].startswith("sqlite:///") and m.bytes_added > 0
    # the manifest's fingerprint is that of the live database (nothing wrote meanwhile)
    assert m.tables == sqlite_fingerprint(seeded_target.sqlite_path, repo)

    again = open_repository(file_repo_url, passphrase="pw")
    loaded = again.load_manifest(m.id[:6])
    assert loaded.id == m.id and loaded.chunks == m.chunks and loaded.tables == m.tables
    art = again.materialize(m.id, tmp_path / "out")
    assert art.kind == "sqlite" and art.path.exists() and art.path.stat().st_size == m.size_bytes
    assert sqlite_fingerprint(art.path, again) == m.tables
    assert not list((tmp_path / "out").glob(".*partial*"))
    check = again.check_chunks()
    assert check.ok and check.chunks_checked >= len(set(m.chunks)) and check.bytes_read > 0 and not check.problems

    # evidence and results in the data directory
    records = EvidenceLog(seeded_target.data_dir).records()
    assert records[-1]["kind"] == "backup.create" and records[-1]["data"]["backup_id"] == m.id
    assert EvidenceLog(seeded_target.data_dir).verify()[1] == []
    r = results.read(seeded_target.data_dir)["backup.create"]
    assert r.ok and r.value("bytes_added") == m.bytes_added and r.value("size_bytes") == m.size_bytes
    assert "duration" in r.fields


def test_zstd_level_is_the_repositorys(seeded_target, file_repo_url, tmp_path):
    """New repositories compress at DEFAULT_ZSTD_LEVEL; one made with another level (as every
    repository made before, at 3) keeps it, and its backups restore the same."""
    from controlplane.backup.repository import DEFAULT_ZSTD_LEVEL

    fast = new_repo(file_repo_url)
    assert fast.config["zstd_level"] == DEFAULT_ZSTD_LEVEL == fast.sealer.zstd_level
    older = new_repo(f"file://{tmp_path / 'level3'}", zstd_level=3)
    assert open_repository(f"file://{tmp_path / 'level3'}", passphrase="pw").sealer.zstd_level == 3
    a, b = fast.create_backup(seeded_target), older.create_backup(seeded_target)
    assert a.chunk_count == b.chunk_count and b.bytes_added < a.bytes_added < a.size_bytes * 0.6
    for repo, m in ((fast, a), (older, b)):
        art = repo.materialize(m.id, tmp_path / m.id)
        assert art.path.read_bytes() == (tmp_path / a.id / "erp.sqlite3").read_bytes()
        assert repo.check_chunks().ok


def test_packs_not_objects_per_page(seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url, pack_size=64 << 10)
    m = repo.create_backup(seeded_target)
    packs = list((tmp_path / "repo" / "data").rglob("*"))
    packs = [p for p in packs if p.is_file()]
    assert m.chunk_count > 150 and 1 < len(packs) < m.chunk_count / 10
    assert len(list((tmp_path / "repo" / "index").iterdir())) == 1


def test_scattered_update_adds_only_changed_pages(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url)
    first = repo.create_backup(seeded_target)
    changed = scatter_update(seeded_target, 0.01)
    second = repo.create_backup(seeded_target)
    assert changed >= 5 and second.tables != first.tables
    ratio = second.bytes_added / first.bytes_added
    assert ratio < 0.15, (second.bytes_added, first.bytes_added, second.details)
    assert second.details["chunks_new"] < first.chunk_count * 0.1
    third = repo.create_backup(seeded_target)
    assert third.details["chunks_new"] == 0


def test_snapshot_consistent_while_the_erp_writes(seeded_target, file_repo_url, tmp_path):
    erp = Erp(seeded_target.database_url, "sqlite")
    wh = erp.warehouse("WHX")
    cust, supp = erp.customer("CX"), erp.supplier("SX")
    prod = erp.product("PX", "10.00")
    erp.stock_in(supp, wh, [(prod, 1000, "4.00")])
    stop = threading.Event()
    made = []

    def writer():
        while not stop.is_set():
            so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                            "lines": [{"product_id": prod, "quantity": "1"}]}, role="sales")
            erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
            erp.post(f"/sales-orders/{so['id']}/deliver", role="warehouse", expect=200)
            made.append(so["id"])

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.3)
        repo = new_repo(file_repo_url)
        manifests = [repo.create_backup(seeded_target, check_invariants=True) for _ in range(3)]
    finally:
        stop.set()
        t.join()
        erp.close()
    assert made
    for m in manifests:
        assert m.invariants == []
        art = repo.materialize(m.id, tmp_path / m.id)
        assert sqlite_fingerprint(art.path, repo) == m.tables


def test_unique_prefix_and_missing(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url)
    a = repo.create_backup(seeded_target)
    with pytest.raises(BackupNotFound):
        repo.load_manifest("zz-no-such")
    with pytest.raises(BackupNotFound):
        repo.load_manifest("")
    assert repo.load_manifest("latest").id == a.id
    b = repo.create_backup(seeded_target)
    assert [m.id for m in repo.list_manifests()] == [a.id, b.id]
    twin = a.id[:4] + ("0" if a.id[4] != "0" else "1") + a.id[5:]
    repo.store.put(f"snapshots/{twin}", repo.store.get(f"snapshots/{a.id}"))
    with pytest.raises(BackupNotFound, match="matches 2"):
        repo.load_manifest(a.id[:4])
    assert repo.load_manifest(a.id).id == a.id
    assert [m.id for m in repo.list_manifests()] == [a.id, b.id]  # the forged one fails to open


def test_not_initialised(tmp_path):
    with pytest.raises(RepositoryNotInitialised):
        open_repository(f"file://{tmp_path / 'nothing'}", passphrase="pw")


def test_wrong_key_refused_nothing_touched(seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url)
    repo.create_backup(seeded_target)
    before = tree_digest(tmp_path / "repo")
    with pytest.raises(WrongKey) as exc:
        open_repository(file_repo_url, passphrase="not the passphrase")
    assert "does not open" in exc.value.detail and exc.value.exit_code == 21
    with pytest.raises(WrongKey):
        open_repository(file_repo_url)  # no key at all
    assert tree_digest(tmp_path / "repo") == before


def test_key_file(seeded_target, file_repo_url, tmp_path, monkeypatch):
    key = tmp_path / "keys" / "repo.key"
    repo = open_repository(file_repo_url, key_file=key, create=True)
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    m = repo.create_backup(seeded_target)
    monkeypatch.setenv("ERPCTL_BACKUP_KEY_FILE", str(key))
    assert open_repository(file_repo_url).load_manifest(m.id).id == m.id
    other = tmp_path / "other.key"
    other.write_text("x" * 64)
    with pytest.raises(DataDirProblem) as exc:  # readable by others: refused before it is read
        open_repository(file_repo_url, key_file=other)
    assert exc.value.fix == f"chmod 600 {other}"
    other.chmod(0o600)
    with pytest.raises(WrongKey):
        open_repository(file_repo_url, key_file=other)


def test_corrupt_chunk_named_with_its_backups(seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url)
    a = repo.create_backup(seeded_target)
    b = repo.create_backup(seeded_target)
    repo.load_index()
    cid = a.chunks[5]
    loc = repo.index[bytes.fromhex(cid)]
    path = tmp_path / "repo" / pack_key(loc.pack)
    data = bytearray(path.read_bytes())
    data[loc.offset + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    check = repo.check_chunks()
    assert not check.ok
    [p] = [p for p in check.problems if p["chunk"] == cid]
    assert p["pack"] == loc.pack and "authentication" in p["reason"] and p["backups"] == sorted([a.id, b.id])
    with pytest.raises(ChunkCorrupt) as exc:
        repo.materialize(a.id, tmp_path / "out")
    assert cid in exc.value.detail
    assert not (tmp_path / "out" / "erp.sqlite3").exists()
    only_a = repo.check_chunks([a.id[:8]])
    assert only_a.backups_checked == [a.id]


def test_resume_reuses_packs_of_a_killed_run(seeded_target, file_repo_url, tmp_path):
    """Packs uploaded by a run that died before its index and manifest are found and reused."""
    repo = new_repo(file_repo_url, pack_size=64 << 10)
    m = repo.create_backup(seeded_target)
    # make it look as if the run died after uploading its packs: drop its index and manifest
    shutil.rmtree(tmp_path / "repo" / "index")
    (tmp_path / "repo" / "snapshots" / m.id).unlink()
    fresh = open_repository(file_repo_url, passphrase="pw")
    assert fresh.list_manifests() == []
    again = fresh.create_backup(seeded_target)
    assert again.details["packs_reused_from_unfinished_run"] > 0 and again.details["chunks_new"] == 0
    assert fresh.check_chunks().ok


# ---- retention and prune -----------------------------------------------------------------------

def _fake(i, when):
    return Manifest(id=f"{i:032x}", created_at=when, engine="sqlite", format="sqlite3", size_bytes=0, chunk_count=0,
                    bytes_added=0, schema_revision=None, erp_version="", duration_seconds=0, source="", tables={},
                    invariants=[])


def test_retention_rules():
    from controlplane.backup.retention import select

    ms = [_fake(1, "2026-01-01T10:00:00+00:00"), _fake(2, "2026-01-01T20:00:00+00:00"),
          _fake(3, "2026-01-02T10:00:00+00:00"), _fake(4, "2026-01-09T10:00:00+00:00"),
          _fake(5, "2026-02-01T10:00:00+00:00"), _fake(6, "2026-02-01T11:00:00+00:00")]
    keep, forget, why = select(ms, RetentionPolicy(keep_last=1))
    assert [m.id[-1] for m in keep] == ["6"]
    keep, forget, why = select(ms, RetentionPolicy(keep_daily=3))
    assert sorted(m.id[-1] for m in keep) == ["3", "4", "6"]
    keep, forget, why = select(ms, RetentionPolicy(keep_weekly=10))
    assert sorted(m.id[-1] for m in keep) == ["3", "4", "6"]  # 2026-01-01/02 share ISO week 1
    keep, forget, why = select(ms, RetentionPolicy(keep_monthly=2))
    assert sorted(m.id[-1] for m in keep) == ["4", "6"]  # the newest of each month
    keep, forget, why = select(ms, RetentionPolicy(keep_last=1, keep_monthly=2))
    assert why[ms[-1].id] == ["last", "monthly 2026-02"]
    from erp_core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        select(ms, RetentionPolicy())


def test_prune_frees_space_and_keeps_what_is_needed(seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url, pack_size=32 << 10)
    ms = [repo.create_backup(seeded_target)]
    for seed in (1, 2, 3):
        scatter_update(seeded_target, 0.2, seed=seed)
        ms.append(repo.create_backup(seeded_target))
    size_before = sum(p.stat().st_size for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file())
    dry = repo.prune(RetentionPolicy(keep_last=1), dry_run=True)
    assert dry.dry_run and len(dry.forgotten) == 3 and len(repo.list_manifests()) == 4
    res = repo.prune(RetentionPolicy(keep_last=1), data_dir=seeded_target.data_dir)
    assert res.kept == [ms[-1].id] and set(res.forgotten) == {m.id for m in ms[:-1]}
    assert res.packs_deleted + res.packs_repacked > 0 and res.bytes_freed > 0 and not res.deferred
    size_after = sum(p.stat().st_size for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file())
    assert size_after < size_before
    assert [m.id for m in repo.list_manifests()] == [ms[-1].id]
    fresh = open_repository(file_repo_url, passphrase="pw")
    assert fresh.check_chunks().ok
    art = fresh.materialize(ms[-1].id, tmp_path / "out")
    assert sqlite_fingerprint(art.path, fresh) == ms[-1].tables
    assert len(list((tmp_path / "repo" / "index").iterdir())) == 1
    assert results.read(seeded_target.data_dir)["backup.prune"].ok
    assert EvidenceLog(seeded_target.data_dir).records()[-1]["kind"] == "backup.prune"
    # a new backup after the prune still deduplicates against what is left
    nxt = fresh.create_backup(seeded_target)
    assert nxt.details["chunks_new"] <= 2


def test_prune_while_a_backup_runs_only_forgets(seeded_target, file_repo_url):
    repo = new_repo(file_repo_url)
    a = repo.create_backup(seeded_target)
    scatter_update(seeded_target, 0.3)
    b = repo.create_backup(seeded_target)
    running = lockmod.Lock(repo.store, "backup", exclusive=False).acquire()
    try:
        res = repo.prune(RetentionPolicy(keep_last=1))
    finally:
        running.release()
    assert res.deferred and res.forgotten == [a.id] and res.packs_deleted == 0 and "running" in res.note
    assert repo.check_chunks().ok
    res2 = repo.prune(RetentionPolicy(keep_last=1))
    assert not res2.deferred and res2.forgotten == []
    assert repo.check_chunks().ok and [m.id for m in repo.list_manifests()] == [b.id]


# ---- locks -------------------------------------------------------------------------------------

def test_exclusive_lock_blocks_and_stale_lock_is_taken_over(seeded_target, file_repo_url, tmp_path):
    repo = new_repo(file_repo_url)
    held = lockmod.Lock(repo.store, "prune", exclusive=True).acquire()
    try:
        with pytest.raises(RepositoryLocked) as exc:
            repo.create_backup(seeded_target)
        assert "prune" in exc.value.detail and exc.value.exit_code == 24
    finally:
        held.release()
    # a lock left by a process that died on this host is stale
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = lockmod.Lock(repo.store, "prune", exclusive=True)
    info = stale.info()
    info.update(pid=dead.pid, pid_start=None)
    repo.store.put(stale.key, json.dumps(info).encode())
    # and one from another host whose heartbeat expired
    other = lockmod.Lock(repo.store, "backup", exclusive=True)
    info = other.info()
    info.update(host="elsewhere", expires=time.time() - 1)
    repo.store.put(other.key, json.dumps(info).encode())
    m = repo.create_backup(seeded_target)
    assert m.id and list((tmp_path / "repo" / "locks").iterdir()) == []


def test_two_runs_at_once_never_both_hold_exclusive(file_repo_url):
    repo = new_repo(file_repo_url)
    got, errors = [], []

    def take():
        try:
            lk = lockmod.Lock(repo.store, "prune", exclusive=True).acquire()
            got.append(lk)
        except RepositoryLocked as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(got) <= 1 and len(got) + len(errors) == 4
    for lk in got:
        lk.release()


# ---- chunking ----------------------------------------------------------------------------------

def test_content_defined_chunks_survive_an_insertion(tmp_path):
    from controlplane.backup.cdc import cdc_chunks

    data = os.urandom(3 << 20)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(data)
    b.write_bytes(data[:1000] + b"inserted bytes" + data[1000:])
    ca, cb = list(cdc_chunks(a, b"k" * 32)), list(cdc_chunks(b, b"k" * 32))
    assert b"".join(ca) == data and b"".join(cb) == data[:1000] + b"inserted bytes" + data[1000:]
    assert all(16 << 10 <= len(c) <= 256 << 10 for c in ca[:-1])
    shared = set(ca) & set(cb)
    assert len(shared) >= len(ca) - 2


# ---- PostgreSQL and S3 -------------------------------------------------------------------------

@pytest.mark.postgres
def test_postgresql_backup_roundtrip(pg_seeded_target, file_repo_url, tmp_path):
    if not shutil.which("pg_restore"):
        pytest.skip("pg_restore is not installed")
    repo = new_repo(file_repo_url)
    m = repo.create_backup(pg_seeded_target, check_invariants=True)
    assert m.engine == "postgresql" and m.format == "pg_dump-custom" and m.invariants == []
    assert "@" not in m.source or ":" not in m.source.split("@")[0].split("//")[1]  # no password
    engine = create_engine(pg_seeded_target.database_url)
    with engine.connect() as c:
        assert fingerprint(c) == m.tables
    # the ERP writes on; a second backup stores little
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE sales_orders SET notes = 'changed' WHERE id IN "
                          "(SELECT id FROM sales_orders ORDER BY id LIMIT 2)")
    engine.dispose()
    m2 = repo.create_backup(pg_seeded_target)
    assert m2.tables != m.tables and m2.bytes_added < m.bytes_added
    art = repo.materialize(m.id, tmp_path / "out")
    assert art.kind == "pg_dump" and art.path.stat().st_size == m.size_bytes
    listing = subprocess.run(["pg_restore", "--list", str(art.path)], capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE DATA public sales_orders" in listing.stdout
    assert repo.check_chunks().ok


def test_s3_roundtrip_through_moto(moto_s3, seeded_target, tmp_path):
    repo = new_repo(moto_s3["url"], pack_size=64 << 10)
    m = repo.create_backup(seeded_target)
    keys = [o.key for o in repo.store.list("")]
    assert "config" in keys and f"snapshots/{m.id}" in keys and any(k.startswith("data/") for k in keys)
    again = open_repository(moto_s3["url"], passphrase="pw")
    assert again.check_chunks().ok
    art = again.materialize(m.id[:8], tmp_path / "out")
    assert sqlite_fingerprint(art.path, again) == m.tables
    scatter_update(seeded_target, 0.01)
    m2 = again.create_backup(seeded_target)
    assert m2.bytes_added < m.bytes_added * 0.15
    res = again.prune(RetentionPolicy(keep_last=1))
    assert res.forgotten == [m.id] and again.check_chunks().ok
    with pytest.raises(WrongKey):
        open_repository(moto_s3["url"], passphrase="wrong")


def test_s3_settings_from_the_data_dir(moto_s3, seeded_target, monkeypatch):
    monkeypatch.delenv("ERPCTL_S3_ENDPOINT_URL")
    (seeded_target.data_dir / "backup.json").write_text(json.dumps({"s3": {"endpoint_url": moto_s3["endpoint_url"]}}))
    repo = open_repository(moto_s3["url"], passphrase="pw", create=True, kdf=FAST_KDF, data_dir=seeded_target.data_dir)
    assert repo.create_backup(seeded_target).chunk_count > 0



def test_facts_of_a_large_snapshot_in_a_parallel_process(seeded_target, file_repo_url, monkeypatch, tmp_path):
    """With check_invariants, a large database's facts come from a process of their own (started
    before the copy); without, from a thread beside the chunking; small ones inline. All three give
    the same fingerprint, the live database's."""
    from controlplane.backup import snapshot

    repo = new_repo(file_repo_url)
    live = sqlite_fingerprint(seeded_target.sqlite_path, repo)
    inline = repo.create_backup(seeded_target, check_invariants=True)
    assert "facts" not in inline.details and inline.invariants == [] and inline.tables == live
    monkeypatch.setattr(snapshot, "PARALLEL_FACTS_BYTES", 0)
    m = repo.create_backup(seeded_target, check_invariants=True)
    assert m.details["facts"] == "parallel process" and m.invariants == []
    assert m.tables == live and m.schema_revision == inline.schema_revision
    t = repo.create_backup(seeded_target)
    assert t.details["facts"] == "parallel thread" and t.invariants is None
    assert t.tables == live and t.schema_revision == inline.schema_revision

    c = sqlite3.connect(seeded_target.sqlite_path)  # the process reports what it finds
    c.execute("UPDATE stock_levels SET quantity = quantity + 5 WHERE rowid = (SELECT min(rowid) FROM stock_levels)")
    c.commit()
    c.close()
    broken = repo.create_backup(seeded_target, check_invariants=True)
    assert {v["check"] for v in broken.invariants} == {"on_hand_matches_moves"} and broken.invariants_ok is False
    assert broken.tables["stock_levels"] != m.tables["stock_levels"]
    assert {k: v for k, v in broken.tables.items() if k != "stock_levels"} == \
        {k: v for k, v in m.tables.items() if k != "stock_levels"}


def test_large_snapshots_are_sealed_by_processes(seeded_target, file_repo_url, monkeypatch, tmp_path):
    """Above SEAL_PROCESS_MIN_BYTES the sealing runs in worker processes: the same chunks, packs that
    check, a restorable file, deduplication against the repository, and no process left behind."""
    import psutil

    from controlplane.backup.repository import tuning as R

    threads = new_repo(f"file://{tmp_path / 'threads'}")
    by_threads = threads.create_backup(seeded_target)
    monkeypatch.setattr(R, "SEAL_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(R, "SEAL_RANGE", 64 << 10)  # many ranges for a small database
    repo = new_repo(file_repo_url, pack_size=64 << 10)
    m = repo.create_backup(seeded_target)
    assert m.details["capture"].startswith("in place") and by_threads.details["capture"] == "copy"
    assert m.chunk_count == by_threads.chunk_count and m.details["chunks_new"] == by_threads.details["chunks_new"]
    # the page digests are the chunk ids, whoever computed them (keyed: each repository its own)
    assert m.tables == sqlite_fingerprint(seeded_target.sqlite_path, repo)
    assert {t: v["rows"] for t, v in m.tables.items()} == {t: v["rows"] for t, v in by_threads.tables.items()}
    assert m.details["seal_cpu_seconds"] > 0
    assert repo.check_chunks().ok
    in_place = repo.materialize(m.id, tmp_path / "out").path.read_bytes()
    copied = threads.materialize(by_threads.id, tmp_path / "out-threads").path.read_bytes()
    # the same pages; only the 100-byte file header differs: read in place, it still says WAL mode
    # (bytes 18-19), the copy's says rollback journal, and each has its own change counter
    assert (in_place[18:20], copied[18:20]) == (b"\x02\x02", b"\x01\x01")
    assert in_place[100:] == copied[100:]
    scatter_update(seeded_target, 0.01)
    second = repo.create_backup(seeded_target)
    assert 0 < second.details["chunks_new"] < m.chunk_count * 0.1
    assert repo.check_chunks().ok
    children = [p for p in psutil.Process().children(recursive=True) if "sealworker" in " ".join(p.cmdline())]
    assert not children, children


def test_large_checks_and_restores_open_packs_in_processes(seeded_target, file_repo_url, monkeypatch, tmp_path):
    """Above OPEN_PROCESS_MIN_BYTES the packs are opened (and the restored file written) by worker
    processes: the same file as in this process, the same L1 result, and a damaged chunk is named
    with every backup that needs it, and keeps a restore from publishing anything."""
    import psutil

    from controlplane.backup.repository import tuning as R
    from controlplane.backup import sealworker
    from tests.controlplane.backup.test_verify import corrupt_shared_chunk

    repo = new_repo(file_repo_url, pack_size=64 << 10)
    first = repo.create_backup(seeded_target)
    scatter_update(seeded_target, 0.01)
    second = repo.create_backup(seeded_target)
    here = repo.materialize(second.id, tmp_path / "here").path.read_bytes()
    checked_here = repo.check_chunks()
    monkeypatch.setattr(R, "OPEN_PROCESS_MIN_BYTES", 0)
    handed, submit_open = [], sealworker.Worker.submit_open

    def counted(self, dest, entries, pack):
        handed.append((dest, len(entries)))
        submit_open(self, dest, entries, pack)

    monkeypatch.setattr(sealworker.Worker, "submit_open", counted)
    assert repo.materialize(second.id, tmp_path / "workers").path.read_bytes() == here
    assert handed and all(dest.endswith(".partial-" + str(os.getpid())) for dest, _ in handed)
    handed.clear()
    checked = repo.check_chunks()
    assert checked.ok and (checked.chunks_checked, checked.packs_read, checked.bytes_read) == \
        (checked_here.chunks_checked, checked_here.packs_read, checked_here.bytes_read)
    assert len(handed) == checked.packs_read and sum(n for _, n in handed) == checked.chunks_checked

    cid = corrupt_shared_chunk(repo, first, second)
    with pytest.raises(ChunkCorrupt, match=cid):  # found by a worker (before a check marks it)
        repo.materialize(first.id, tmp_path / "damaged")
    assert list((tmp_path / "damaged").iterdir()) == []  # no file, not even a partial one
    bad = repo.check_chunks()
    assert [(p["chunk"], p["reason"].split(" ")[0], p["backups"]) for p in bad.problems] == \
        [(cid, "authentication", sorted([first.id, second.id]))]
    children = [p for p in psutil.Process().children(recursive=True) if "sealworker" in " ".join(p.cmdline())]
    assert not children, children


def _wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames copied into the file) after a passive checkpoint of another connection."""
    c = sqlite3.connect(path)
    try:
        return tuple(c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1:])
    finally:
        c.close()


def test_an_in_place_snapshot_keeps_what_it_saw_while_writers_commit_and_checkpoint(
        seeded_target, file_repo_url, monkeypatch, tmp_path):
    """Read in place, the backup is the database as it was when the backup began: the writes committed
    while its pages are read stay in the WAL (the checkpoints that try to copy them into the file
    cannot), and the restored copy has none of them. Afterwards the checkpoints go on."""
    from controlplane.backup.repository import tuning as R
    from controlplane.backup import sealworker

    monkeypatch.setattr(R, "SEAL_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(R, "SEAL_RANGE", 64 << 10)  # many ranges: writes land between them
    repo = new_repo(file_repo_url, pack_size=64 << 10)
    live = seeded_target.sqlite_path
    before = sqlite_fingerprint(live, repo)
    submit, checkpoints = sealworker.Worker.submit, []

    def submit_then_write(self, *args):
        submit(self, *args)
        scatter_update(seeded_target, 0.05, seed=len(checkpoints))
        checkpoints.append(_wal_frames(live))

    monkeypatch.setattr(sealworker.Worker, "submit", submit_then_write)
    m = repo.create_backup(seeded_target)
    monkeypatch.setattr(sealworker.Worker, "submit", submit)
    assert m.details["capture"].startswith("in place")
    assert len(checkpoints) > 3 and all(copied < frames for frames, copied in checkpoints), checkpoints
    assert m.tables == before
    restored = repo.materialize(m.id, tmp_path / "out").path
    assert verify.sqlite_engine_checks(restored) == []
    assert sqlite_fingerprint(restored, repo) == before
    frames, copied = _wal_frames(live)  # the backup is over: nothing holds the file any more
    assert frames == copied
    assert sqlite_fingerprint(live, repo) != before


def test_a_backup_copies_the_database_when_a_reader_keeps_the_wal_from_the_file(seeded_target, file_repo_url,
                                                                               monkeypatch, tmp_path):
    """A long reader on an older state keeps the newest commits out of the file: the file alone is not
    the database, so the backup takes SQLite's copy, with every commit in it."""
    from controlplane.backup.repository import tuning as R

    monkeypatch.setattr(R, "SEAL_PROCESS_MIN_BYTES", 0)
    repo = new_repo(file_repo_url)
    live = seeded_target.sqlite_path
    reader = sqlite3.connect(live, isolation_level=None)
    try:
        scatter_update(seeded_target, 0.01, seed=1)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM partners").fetchone()
        scatter_update(seeded_target, 0.01, seed=2)  # past the reader's mark: no checkpoint can copy it
        newest = sqlite_fingerprint(live, repo)
        m = repo.create_backup(seeded_target)
    finally:
        reader.close()
    assert m.details["capture"] == "copy"
    assert m.tables == newest
    assert sqlite_fingerprint(repo.materialize(m.id, tmp_path / "out").path, repo) == newest


def test_a_sealing_process_that_dies_fails_the_backup_and_publishes_nothing(seeded_target, file_repo_url,
                                                                          monkeypatch):
    from controlplane.backup.repository import tuning as R
    from controlplane.backup import sealworker
    from controlplane.errors import BackupError

    monkeypatch.setattr(R, "SEAL_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(R, "SEAL_RANGE", 64 << 10)
    repo = new_repo(file_repo_url)
    result = sealworker.Worker.result

    def dies(self):
        self.proc.kill()
        self.proc.wait()
        return result(self)

    monkeypatch.setattr(sealworker.Worker, "result", dies)
    with pytest.raises(BackupError, match="sealing process died"):
        repo.create_backup(seeded_target)
    assert repo.list_manifests() == []
