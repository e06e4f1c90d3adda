"""Faults during backups, with real processes: SIGKILL at named failpoints (controlplane.faults) and
at random moments of `erpctl backup create` and `erpctl backup prune` (the seed printed), the S3 server stopped mid-upload, a disk that fills up, a wrong key.
After each: the repository is valid (L1 clean), there is no manifest for an unfinished backup,
nothing half-published, and the next run succeeds."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from controlplane.backup.repository import open_repository
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import env, erpctl, erpctl_path, ok_json, small_filesystem
from tests.controlplane.fault_helpers import seeded_rng

from .conftest import FAST_KDF, PASSPHRASE, s3_env, scatter_update, start_moto
from .test_repository import sqlite_fingerprint

SMALL_PACKS = 16 << 10  # many packs from a small database: many points to be killed between


def run_killed(args: list[str], *, failpoint: str | None = None, kill_after: float | None = None,
               extra_env: dict | None = None, timeout: float = 60) -> tuple[int, list[str]]:
    """Run erpctl with debug JSON logs; it SIGKILLs itself at a failpoint ("name=kill@N": the N-th time
    it gets there), or is SIGKILLed after a delay. Returns (returncode, stderr lines)."""
    extra = {**(extra_env or {}), **({"ERPCTL_FAILPOINTS": failpoint} if failpoint else {})}
    proc = subprocess.Popen([erpctl_path(), "--log-level", "debug", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env(**extra))
    timer = threading.Timer(kill_after, proc.send_signal, (signal.SIGKILL,)) if kill_after is not None else None
    if timer:
        timer.start()
    lines = list(proc.stderr)
    rc = proc.wait(timeout=timeout)
    if timer:
        timer.cancel()
    return rc, lines


def assert_repository_valid(url: str, target=None) -> list:
    repo = open_repository(url, passphrase=PASSPHRASE)
    check = repo.check_chunks()
    assert check.ok, check.problems
    manifests = repo.list_manifests()
    return manifests


@pytest.fixture
def small_repo(seeded_target, passphrase, tmp_path):
    url = f"file://{tmp_path / 'repo'}"
    open_repository(url, create=True, kdf=FAST_KDF, pack_size=SMALL_PACKS)
    return url


def test_sigkill_during_create(seeded_target, small_repo, tmp_path):
    rng = seeded_rng()
    args = ["backup", "create", "--repo", small_repo, "--data-dir", str(seeded_target.data_dir)]
    completed = 0
    kills = 0
    # Kill after the first or second pack of each run: a run after a scattered update stores only a
    # few packs (16 KiB each), so a later pack number might never come and the run would complete.
    plans = [f"backup.pack.uploaded=kill@{rng.randint(1, 2)}" for _ in range(4)] + [None] * 3
    for plan in plans:
        if plan is None:
            rc, lines = run_killed(args, kill_after=rng.uniform(0.8, 2.0))
        else:
            rc, lines = run_killed(args, failpoint=plan)
        if rc == -signal.SIGKILL:
            kills += 1
        else:
            assert rc == 0, "".join(lines[-5:])
            completed += 1
        manifests = assert_repository_valid(small_repo)
        assert len(manifests) <= completed + 1  # killed after publishing at most (then it was complete)
        completed = len(manifests)
        scatter_update(seeded_target, 0.2, seed=kills + completed)  # the next run has new pages to store
    assert kills >= 4
    # the next run succeeds, and every backup there is restores to its manifest
    made = ok_json(*args)
    repo = open_repository(small_repo, passphrase=PASSPHRASE)
    assert repo.check_chunks().ok
    for m in repo.list_manifests():
        art = repo.materialize(m.id, tmp_path / "restored" / m.id)
        assert sqlite_fingerprint(art.path, repo) == m.tables
    assert made["id"] in [m.id for m in repo.list_manifests()]
    assert not list(seeded_target.data_dir.glob(".erpctl-backup-*"))  # killed runs' snapshots cleaned
    assert not list((tmp_path / "repo" / "locks").iterdir())
    assert EvidenceLog(seeded_target.data_dir).verify()[1] == []


def test_sigkill_during_prune(seeded_target, small_repo, tmp_path):
    rng = seeded_rng()
    repo = open_repository(small_repo, passphrase=PASSPHRASE)
    for seed in range(5):
        repo.create_backup(seeded_target)
        scatter_update(seeded_target, 0.25, seed=100 + seed)
    newest = repo.create_backup(seeded_target)
    args = ["backup", "prune", "--keep-last", "2", "--repo", small_repo, "--data-dir", str(seeded_target.data_dir)]
    for delay in sorted(rng.uniform(0.9, 1.8) for _ in range(5)):
        rc, lines = run_killed(args, kill_after=delay)
        manifests = assert_repository_valid(small_repo)
        assert newest.id in [m.id for m in manifests]
        if rc == 0:
            break
    pruned = ok_json(*args)
    assert pruned["deferred"] is False
    left = assert_repository_valid(small_repo)
    assert len(left) == 2 and left[-1].id == newest.id
    fresh = open_repository(small_repo, passphrase=PASSPHRASE)
    art = fresh.materialize(newest.id, tmp_path / "out")
    assert sqlite_fingerprint(art.path, fresh) == newest.tables
    assert ok_json("backup", "create", "--repo", small_repo, "--data-dir", str(seeded_target.data_dir))["id"]
    assert open_repository(small_repo, passphrase=PASSPHRASE).check_chunks().ok


def test_sigkill_prune_between_its_steps(seeded_target, small_repo, tmp_path):
    """Killed after each delete of prune's garbage collection in turn (failpoint backup.prune.step)."""
    repo = open_repository(small_repo, passphrase=PASSPHRASE)
    for seed in range(4):
        repo.create_backup(seeded_target)
        scatter_update(seeded_target, 0.3, seed=200 + seed)
    keep = repo.create_backup(seeded_target)
    args = ["backup", "prune", "--keep-last", "1", "--repo", small_repo, "--data-dir", str(seeded_target.data_dir)]
    for n in (1, 3, 6):
        rc, _ = run_killed(args, failpoint=f"backup.prune.step=kill@{n}")
        assert rc == -signal.SIGKILL
        left = assert_repository_valid(small_repo)
        assert keep.id in [m.id for m in left]
    ok_json(*args)
    assert [m.id for m in assert_repository_valid(small_repo)] == [keep.id]


# ---- S3 stopped mid-upload -----------------------------------------------------------------------

def test_s3_server_stopped_mid_upload(seeded_target, passphrase, monkeypatch, tmp_path):
    server = start_moto()
    try:
        bucket = server.make_bucket()
        for k, v in s3_env(server.endpoint_url).items():
            monkeypatch.setenv(k, v)
        url = f"s3://{bucket}/erp"
        open_repository(url, create=True, kdf=FAST_KDF, pack_size=SMALL_PACKS)
        args = ["--json", "--log-level", "debug", "backup", "create", "--repo", url,
                "--data-dir", str(seeded_target.data_dir)]
        fast_fail = {"ERPCTL_S3_READ_TIMEOUT": "2", "ERPCTL_S3_CONNECT_TIMEOUT": "2", "ERPCTL_S3_MAX_ATTEMPTS": "1"}
        paused, stderr = tmp_path / "paused-after-first-pack", tmp_path / "stderr"
        with open(stderr, "w") as err:  # a file, not a pipe: nothing read while it runs would block it
            proc = subprocess.Popen([erpctl_path(), *args], stdout=subprocess.DEVNULL, stderr=err, text=True,
                                    env=env(**fast_fail, ERPCTL_FAILPOINTS=f"backup.pack.uploaded=pause:{paused}@1"))
        deadline = time.monotonic() + 120
        while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        stopped = paused.exists()
        if stopped:
            os.kill(server.proc.pid, signal.SIGSTOP)  # the server stops answering mid-upload
            paused.unlink()
        proc.wait(timeout=120)
        err_lines = stderr.read_text().splitlines()
        assert stopped, "\n".join(err_lines[-5:])
        assert proc.returncode == 22, "\n".join(err_lines[-5:])
        error = json.loads(err_lines[-1])["error"]
        assert error["title"] == "Backup store unreachable" and "did not answer" in error["detail"]
        assert "run again" in error["fix"]
        os.kill(server.proc.pid, signal.SIGCONT)  # back
        repo = open_repository(url, passphrase=PASSPHRASE)
        assert repo.list_manifests() == []  # nothing published by the failed run
        assert any(o.key.startswith("data/") for o in repo.store.list("data/"))  # but its packs are there
        made = ok_json("backup", "create", "--repo", url, "--data-dir", str(seeded_target.data_dir))
        assert made["details"]["packs_reused_from_unfinished_run"] >= 1
        assert open_repository(url, passphrase=PASSPHRASE).check_chunks().ok
        # a server that is gone altogether: a clear error, quickly
        server.stop()
        gone = erpctl("backup", "create", "--repo", url, "--data-dir", str(seeded_target.data_dir), **fast_fail)
        assert gone.returncode == 22 and "did not answer" in gone.stderr and "fix:" in gone.stderr
        records = EvidenceLog(seeded_target.data_dir).records()
        # the last never reached the repository, and is recorded failed all the same (not silent)
        assert [r["outcome"] for r in records] == ["failed", "ok", "failed"]
        assert "did not answer" in json.dumps(records[-1])
    finally:
        if server.proc is not None:
            try:
                os.kill(server.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        server.stop()


# ---- disk full -----------------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    with small_filesystem(tmp_path / "small", "6m") as mnt:
        yield mnt


def _fill(mnt: Path, leave: int) -> Path:
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_repository_disk_full(seeded_target, passphrase, small_tmpfs):
    url = f"file://{small_tmpfs / 'repo'}"
    open_repository(url, create=True, kdf=FAST_KDF, pack_size=SMALL_PACKS)
    filler = _fill(small_tmpfs, leave=48 << 10)
    r = erpctl("--json", "backup", "create", "--repo", url, "--data-dir", str(seeded_target.data_dir))
    assert r.returncode == 23, r.stderr[-2000:]
    error = json.loads(r.stderr.splitlines()[-1])["error"]
    assert error["title"] == "Disk full" and "no space left" in error["detail"] and "nothing was published" in \
        error["fix"]
    repo_dir = small_tmpfs / "repo"
    assert not list((repo_dir / "snapshots").glob("*")) if (repo_dir / "snapshots").exists() else True
    assert not [p for p in repo_dir.rglob(".tmp-*")]  # no half-written object left
    filler.unlink()
    made = ok_json("backup", "create", "--repo", url, "--data-dir", str(seeded_target.data_dir))
    repo = open_repository(url, passphrase=PASSPHRASE)
    assert [m.id for m in repo.list_manifests()] == [made["id"]] and repo.check_chunks().ok


def test_data_dir_disk_full_for_the_snapshot(seeded_target, passphrase, small_tmpfs, tmp_path):
    """The temporary snapshot does not fit in the data directory."""

    from controlplane.config import Target

    data_dir = small_tmpfs / "data"
    data_dir.mkdir()
    (data_dir / "erp.sqlite3").write_bytes(seeded_target.sqlite_path.read_bytes())  # (2.1 MB)
    target = Target(data_dir, f"sqlite:///{data_dir / 'erp.sqlite3'}")
    url = f"file://{tmp_path / 'repo'}"
    open_repository(url, create=True, kdf=FAST_KDF)
    before = _tree(tmp_path / "repo")
    filler = _fill(small_tmpfs, leave=256 << 10)
    r = erpctl("backup", "create", "--repo", url, "--data-dir", str(data_dir))
    assert r.returncode == 23 and "no space left" in r.stderr, r.stderr[-2000:]
    assert not list(data_dir.glob(".erpctl-backup-*"))
    assert _tree(tmp_path / "repo") == before
    filler.unlink()
    made = ok_json("backup", "create", "--repo", url, "--data-dir", str(data_dir))
    assert made["invariants_ok"] is None and made["tables"] == sqlite_fingerprint(target.sqlite_path,
                                                                 open_repository(url, passphrase=PASSPHRASE))


# ---- wrong key -----------------------------------------------------------------------------------

def test_wrong_key_refused_nothing_touched(seeded_target, small_repo, tmp_path):
    ok_json("backup", "create", "--repo", small_repo, "--data-dir", str(seeded_target.data_dir))
    before = _tree(tmp_path / "repo")
    for command in (["create"], ["list"], ["show", "latest"], ["prune", "--keep-last", "1"]):
        r = erpctl("backup", *command, "--repo", small_repo, "--data-dir", str(seeded_target.data_dir),
                   ERPCTL_BACKUP_PASSPHRASE="wrong passphrase")
        assert r.returncode == 21 and "does not open" in r.stderr, (command, r.stderr)
    assert _tree(tmp_path / "repo") == before
