"""A damaged repository heals: a check marks the damaged or missing chunks, the next backup stores
them again from the live database, and then the new backup and the old ones that needed only those
chunks verify again. `erpctl backup repair` says what the next backup heals and what is lost."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time

import pytest

from controlplane.backup.pack import pack_key
from controlplane.backup.repository import damage, open_repository
from controlplane.backup.retention import RetentionPolicy
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import env, erpctl, erpctl_path, ok_json

from .conftest import FAST_KDF, scatter_update
from .test_repository import tree_digest


def _dd(target) -> list[str]:
    return ["--data-dir", str(target.data_dir)]


def _init_and_back_up(target, n: int = 2) -> list[dict]:
    ok_json("backup", "init", "--kdf-memory", "8192", *_dd(target))
    return [ok_json("backup", "create", *_dd(target)) for _ in range(n)]


def _repo(target):
    return open_repository(f"file://{target.data_dir / 'backups'}", passphrase="a test passphrase")


def _flip_a_byte(repo_dir, repo, chunk: str) -> str:
    """Flip one byte inside this chunk's sealed bytes in its pack: the pack's name."""
    repo.load_index()
    loc = repo.index[bytes.fromhex(chunk)]
    path = repo_dir / pack_key(loc.pack)
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return loc.pack


def _verify(target, *args) -> tuple[int, dict]:
    r = erpctl("--json", "backup", "verify", *args, *_dd(target))
    return r.returncode, json.loads(r.stdout)


@pytest.fixture
def pw(monkeypatch):
    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", "a test passphrase")


def test_a_flipped_byte_is_healed_by_the_next_backup(seeded_target, pw, tmp_path):
    a, b = _init_and_back_up(seeded_target)
    repo = _repo(seeded_target)
    chunk = repo.load_manifest(a["id"]).chunks[7]
    pack = _flip_a_byte(seeded_target.data_dir / "backups", repo, chunk)

    code, out = _verify(seeded_target, "--level", "1")
    assert code == 28
    [problem] = out["backups"][0]["levels"][0]["problems"]
    assert problem["chunk"] == chunk and problem["pack"] == pack and problem["backups"] == sorted([a["id"], b["id"]])
    l1 = out["backups"][0]["levels"][0]
    assert l1["facts"]["chunks_marked"] == 1 and "the next 'erpctl backup create' stores them again" in l1["summary"]

    c = ok_json("backup", "create", *_dd(seeded_target))
    assert c["details"]["chunks_new"] >= 1  # the damaged chunk was stored again
    code, out = _verify(seeded_target, "--level", "3", "latest")
    assert code == 0 and out["backups"][0]["backup"] == c["id"], out
    # the old backups needed only that chunk: the same id, now read from its new pack
    for old in (a, b):
        code, out = _verify(seeded_target, "--level", "1", old["id"])
        assert code == 0, out
    assert _repo(seeded_target).check_chunks().ok


def test_a_deleted_pack_is_healed_by_the_next_backup(seeded_target, pw):
    a, b = _init_and_back_up(seeded_target)
    repo = _repo(seeded_target)
    repo.load_index()
    pack = repo.index[bytes.fromhex(repo.load_manifest(a["id"]).chunks[0])].pack
    (seeded_target.data_dir / "backups" / pack_key(pack)).unlink()

    code, out = _verify(seeded_target, "--level", "1")
    assert code == 28
    problems = out["backups"][0]["levels"][0]["problems"]
    assert problems and all(p["pack"] == pack and p["reason"] == "its pack is missing" for p in problems)
    # verifying again before a backup still names the pack
    code, out = _verify(seeded_target, "--level", "1")
    assert code == 28 and {p["pack"] for p in out["backups"][0]["levels"][0]["problems"]} == {pack}

    ok_json("backup", "create", *_dd(seeded_target))
    code, out = _verify(seeded_target, "--level", "3", "latest")
    assert code == 0, out
    for old in (a, b):
        assert _verify(seeded_target, "--level", "1", old["id"])[0] == 0


def test_repair_on_a_healthy_repository_changes_nothing(seeded_target, pw):
    _init_and_back_up(seeded_target)
    before = tree_digest(seeded_target.data_dir / "backups")
    out = ok_json("backup", "repair", *_dd(seeded_target))
    assert out["ok"] and out["damaged"] == [] and out["chunks_marked"] == 0 and out["unrecoverable"] == []
    assert tree_digest(seeded_target.data_dir / "backups") == before
    assert "backup.repair" not in [r["kind"] for r in EvidenceLog(seeded_target.data_dir).records()]


def test_repair_names_what_the_next_backup_heals(seeded_target, pw):
    a, b = _init_and_back_up(seeded_target)
    repo = _repo(seeded_target)
    chunk = repo.load_manifest(b["id"]).chunks[3]
    pack = _flip_a_byte(seeded_target.data_dir / "backups", repo, chunk)
    out = ok_json("backup", "repair", *_dd(seeded_target))
    assert out["ok"] and out["chunks_marked"] == 1 and out["unrecoverable"] == []
    assert [(p["chunk"], p["pack"], p["heals"]) for p in out["damaged"]] == [(chunk, pack, True)]
    assert out["healed_by_next_backup"] == sorted([a["id"], b["id"]])
    human = erpctl("backup", "repair", *_dd(seeded_target))
    assert human.returncode == 0 and "the next backup stores it again" in human.stdout
    ok_json("backup", "create", *_dd(seeded_target))
    again = ok_json("backup", "repair", *_dd(seeded_target))
    assert again["damaged"] == [] and again["ok"]


def test_repair_names_and_forgets_the_backups_lost_for_good(seeded_target, pw):
    [a] = _init_and_back_up(seeded_target, 1)
    scatter_update(seeded_target, 0.05)
    [b] = [ok_json("backup", "create", *_dd(seeded_target))]
    repo = _repo(seeded_target)
    only_a = sorted(set(repo.load_manifest(a["id"]).chunks) - set(repo.load_manifest(b["id"]).chunks))
    assert only_a, "the update changed no page"
    _flip_a_byte(seeded_target.data_dir / "backups", repo, only_a[0])

    r = erpctl("--json", "backup", "repair", *_dd(seeded_target))
    assert r.returncode == 26, r.stderr
    out = json.loads(r.stdout)
    assert out["unrecoverable"] == [a["id"]] and out["healed_by_next_backup"] == [] and out["forgotten"] == []
    assert "--forget-unrecoverable" in r.stderr and a["id"] in r.stderr
    assert [x["id"] for x in ok_json("backup", "list", *_dd(seeded_target))["backups"]] == [a["id"], b["id"]]

    out = ok_json("backup", "repair", "--forget-unrecoverable", *_dd(seeded_target))
    assert out["ok"] and out["forgotten"] == [a["id"]]
    assert [x["id"] for x in ok_json("backup", "list", *_dd(seeded_target))["backups"]] == [b["id"]]
    [rec] = [r for r in EvidenceLog(seeded_target.data_dir).records() if r["kind"] == "backup.repair"
             and r["data"]["forgotten"]]
    assert rec["data"]["forgotten"] == [a["id"]] and rec["data"]["unrecoverable"] == [a["id"]]
    assert EvidenceLog(seeded_target.data_dir).verify()[1] == []
    assert ok_json("backup", "repair", *_dd(seeded_target))["damaged"] == []


def test_prune_keeps_only_the_marks_of_chunks_still_lacking(seeded_target, pw):
    a, b = _init_and_back_up(seeded_target)
    repo = _repo(seeded_target)
    chunk = repo.load_manifest(a["id"]).chunks[2]
    _flip_a_byte(seeded_target.data_dir / "backups", repo, chunk)
    assert not repo.check_chunks().ok
    marks = seeded_target.data_dir / "backups" / "damaged"
    assert len(list(marks.iterdir())) == 1
    # pruned before any backup healed it: the mark stays, the chunk is still lacking
    _repo(seeded_target).prune(RetentionPolicy(keep_last=2))
    assert len(list(marks.iterdir())) == 1
    assert not _repo(seeded_target).check_chunks().ok
    c = _repo(seeded_target).create_backup(seeded_target)
    _repo(seeded_target).prune(RetentionPolicy(keep_last=3))
    assert list(marks.iterdir()) == []
    fresh = _repo(seeded_target)
    assert fresh.check_chunks().ok and fresh.check_chunks([a["id"], b["id"], c.id]).ok


def test_postgresql_flipped_byte_healed(pg_seeded_target, tmp_path):
    repo = open_repository(f"file://{tmp_path / 'repo'}", passphrase="pw", create=True, kdf=FAST_KDF)
    a = repo.create_backup(pg_seeded_target)
    time.sleep(1.1)  # a later dump differs in its header (see below); the data's chunks stay the same
    assert len(a.chunks) >= 3
    chunk = a.chunks[len(a.chunks) // 2]
    _flip_a_byte(tmp_path / "repo", repo, chunk)
    check = repo.check_chunks()
    assert [p["chunk"] for p in check.problems] == [chunk] and check.chunks_marked == 1
    found = repo.repair(pg_seeded_target)
    assert found.healed_by_next_backup == [a.id] and found.unrecoverable == []
    b = repo.create_backup(pg_seeded_target)
    assert repo.check_chunks([b.id]).ok and repo.check_chunks([a.id]).ok
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    assert repo.materialize(a.id, tmp_path / "out").size_bytes == a.size_bytes


def test_postgresql_deleted_pack_loses_the_backup_whose_chunk_list_it_held(pg_seeded_target, tmp_path):
    """Two dumps of the same database taken in different seconds differ in their header (pg_dump
    records its start time), so their first chunk and chunk list differ: a backup whose chunk list
    is gone is lost for good, and repair says so."""
    repo = open_repository(f"file://{tmp_path / 'repo'}", passphrase="pw", create=True, kdf=FAST_KDF)
    a = repo.create_backup(pg_seeded_target)
    time.sleep(1.1)  # the dump repair compares with starts in another second
    repo.load_index()
    pack = repo.index[bytes.fromhex(a.chunk_list[0])].pack
    (tmp_path / "repo" / pack_key(pack)).unlink()
    found = repo.repair(pg_seeded_target)
    lost = {p["chunk"] for p in found.damaged if not p["heals"]}
    assert found.unrecoverable == [a.id] and a.chunk_list[0] in lost and not found.ok
    forgot = repo.repair(pg_seeded_target, forget_unrecoverable=True)
    assert forgot.forgotten == [a.id] and forgot.ok and repo.manifest_ids() == []
    b = repo.create_backup(pg_seeded_target)
    assert repo.check_chunks().ok and repo.check_chunks().backups_checked == [b.id]


def test_marks_of_a_newer_format_are_refused():
    with pytest.raises(ValueError, match="newer erpctl"):
        damage.decode(json.dumps({"version": damage.VERSION + 1, "chunks": []}).encode())
    marks = [("ab" * 32, "cd" * 32, "authentication failed")]
    assert damage.decode(damage.encode(marks)) == marks


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_runbook_heals_a_damaged_pack_as_written(backend, request, pw):
    """Every erpctl step of BackupVerificationFailed, in order, as written (the installation from the
    environment): the confirmation fails at L1 naming the pack, the recovery and its check pass."""
    from tests.monitors.helpers import RUNBOOKS, parse_runbook

    t = request.getfixturevalue("seeded_target" if backend == "sqlite" else "pg_seeded_target")
    where = {"ERPCTL_DATA_DIR": str(t.data_dir), "ERPCTL_DATABASE_URL": t.database_url}
    ok_json("backup", "init", "--kdf-memory", "8192", **where)
    a = ok_json("backup", "create", **where)
    repo = _repo(t)
    if backend == "sqlite":  # the whole pack deleted
        repo.load_index()
        pack = repo.index[bytes.fromhex(repo.load_manifest(a["id"]).chunks[-1])].pack
        (t.data_dir / "backups" / pack_key(pack)).unlink()
    else:  # a dump's chunk list differs from one dump to the next (see test_postgresql_deleted_pack_...)
        chunks = repo.load_manifest(a["id"]).chunks
        assert len(chunks) >= 3
        pack = _flip_a_byte(t.data_dir / "backups", repo, chunks[len(chunks) // 2])

    ran = []
    for step in parse_runbook(RUNBOOKS / "BackupVerificationFailed.md").steps:
        for block in (b for b in step.blocks if b.lang == "erpctl"):
            for line in block.commands:
                r = erpctl(*shlex.split(line)[1:], timeout=300, **where)
                ran.append((step.kind, line, r.returncode))
                if line.startswith("erpctl backup verify") and step.kind == "Confirm":
                    assert r.returncode == 28 and pack in r.stdout, r.stdout + r.stderr
                elif line == "erpctl status":  # critical here for what this test does not run (erpctl up)
                    assert "BackupVerificationFailed" not in r.stdout or step.kind == "Confirm", r.stdout
                    if step.kind == "Check recovery":
                        assert "L1 ok  L2 ok  L3 ok  L4 ok" in r.stdout, r.stdout
                elif step.kind in ("Recover", "Check recovery"):
                    assert r.returncode == 0, f"{line} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert [line for kind, line, _ in ran if kind == "Recover"] == [
        "erpctl backup create", "erpctl backup repair --forget-unrecoverable"]
    assert ("Confirm", "erpctl backup repair", 0) in ran  # nothing lost: the next backup heals it
    assert ran[-1][0] == "Check recovery"
    assert _verify(t, "--level", "1", a["id"])[0] == 0  # the old backup is whole again


def test_a_mark_made_while_a_backup_runs_is_not_lost(seeded_target, pw, tmp_path):
    """A check marks a chunk while a backup holds its shared lock (paused after its first pack, its
    index loaded before the mark) and a prune runs beside it: that backup still needs the damaged
    chunk and the next verify says so; the backup after it heals every backup."""
    a, _ = _init_and_back_up(seeded_target)
    repo = _repo(seeded_target)
    chunk = repo.load_manifest(a["id"]).chunks[4]
    pack = _flip_a_byte(seeded_target.data_dir / "backups", repo, chunk)
    scatter_update(seeded_target, 0.02)  # so that the paused backup uploads a pack
    paused, err = tmp_path / "paused", tmp_path / "stderr"
    with open(err, "w") as f:
        proc = subprocess.Popen([erpctl_path(), "--json", "backup", "create", *_dd(seeded_target)],
                                stdout=subprocess.PIPE, stderr=f, text=True,
                                env=env(ERPCTL_BACKUP_PASSPHRASE="a test passphrase",
                                        ERPCTL_FAILPOINTS=f"backup.pack.uploaded=pause:{paused}@1"))
    try:
        deadline = time.monotonic() + 120
        while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert paused.exists(), err.read_text()
        code, out = _verify(seeded_target, "--level", "1", a["id"])
        assert code == 28 and out["backups"][0]["levels"][0]["problems"][0]["pack"] == pack
        pruned = ok_json("backup", "prune", "--keep-last", "5", *_dd(seeded_target))
        assert pruned["deferred"]
    finally:
        paused.unlink(missing_ok=True)
        stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.read_text()
    during = json.loads(stdout)
    code, out = _verify(seeded_target, "--level", "1", during["id"])
    assert code == 28 and out["backups"][0]["levels"][0]["problems"][0]["chunk"] == chunk
    ok_json("backup", "create", *_dd(seeded_target))
    assert ok_json("backup", "prune", "--keep-last", "5", *_dd(seeded_target))["deferred"] is False
    assert _repo(seeded_target).check_chunks().ok
    assert not list((seeded_target.data_dir / "backups" / "damaged").iterdir())


def test_an_s3_repository_heals_a_damaged_and_a_deleted_pack(moto_s3, seeded_target, tmp_path):
    """The same on S3 (moto's server over HTTP): one pack's object rewritten with a flipped byte,
    another deleted; the marks live in the bucket, the next backup heals both, prune drops the marks."""
    repo = open_repository(moto_s3["url"], passphrase="pw", create=True, kdf=FAST_KDF, pack_size=64 << 10)
    a = repo.create_backup(seeded_target)
    repo.load_index()
    packs = sorted({repo.index[bytes.fromhex(c)].pack for c in a.chunks})
    assert len(packs) >= 2
    flipped, deleted = packs[0], packs[-1]
    s3, bucket = moto_s3["server"].client(), moto_s3["bucket"]
    body = bytearray(s3.get_object(Bucket=bucket, Key=f"repo/{pack_key(flipped)}")["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=f"repo/{pack_key(flipped)}", Body=bytes(body))
    s3.delete_object(Bucket=bucket, Key=f"repo/{pack_key(deleted)}")

    check = open_repository(moto_s3["url"], passphrase="pw").check_chunks()
    assert {p["pack"] for p in check.problems} == {flipped, deleted} and check.chunks_marked == len(check.problems)
    assert [o.key for o in repo.store.list(damage.PREFIX)]
    fresh = open_repository(moto_s3["url"], passphrase="pw")
    b = fresh.create_backup(seeded_target)
    assert fresh.check_chunks([b.id]).ok and fresh.check_chunks([a.id]).ok
    fresh.prune(RetentionPolicy(keep_last=2))
    assert fresh.store.list(damage.PREFIX) == [] and fresh.check_chunks().ok
    assert fresh.materialize(a.id, tmp_path / "out").size_bytes == a.size_bytes
