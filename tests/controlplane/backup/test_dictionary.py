"""The repository's zstd dictionary (controlplane/backup/dictionary.py): trained when a repository is
created for an SQLite database, used by the sealing threads and processes, restores and checks;
repositories without one keep working; a damaged or missing one is refused with a clear error."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import zstandard

from controlplane.backup import dictionary, verify
from controlplane.backup.repository import config as repo_config
from controlplane.backup.repository import open_repository, tuning
from controlplane.config import Target
from controlplane.errors import BackupError, ChunkCorrupt
from tests.controlplane.cli_helpers import erpctl, ok_json
from tests.controlplane.release_helpers import FIXTURES, WHEEL_1_0

from .conftest import FAST_KDF, PASSPHRASE, scatter_update


def du(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def backup_restore_check(repo, target, out: Path) -> None:
    """Two backups (the second after a scattered update), L1, a restore of each, and L1-L3 of the last."""
    first = repo.create_backup(target)
    restored = repo.materialize(first.id, out / "first").path
    scatter_update(target, 0.01)
    second = repo.create_backup(target)
    assert 0 < second.details["chunks_new"] < first.chunk_count * 0.1
    assert repo.check_chunks().ok
    assert repo.materialize(second.id, out / "second").path.read_bytes()[100:] == \
        target.sqlite_path.read_bytes()[100:]
    assert restored.stat().st_size == first.size_bytes
    result = verify.verify_backup(repo, second.id, 3, target=target)
    assert result.ok, result.as_dict()


def test_a_repository_of_release_1_0_keeps_backing_up_verifying_and_restoring(tmp_path):
    """A repository made and written by release 1.0's own code (the kept wheel: format 1, zstd level
    3, no dictionary) still verifies and restores here, takes new backups, and stays format 1."""
    code, data = tmp_path / "erpctl-1.0", tmp_path / "data"
    with zipfile.ZipFile(WHEEL_1_0) as z:
        z.extractall(code)
    data.mkdir()
    shutil.copy(FIXTURES / "erp-1.0.sqlite3", data / "erp.sqlite3")
    url = f"file://{tmp_path / 'repo'}"
    made_by_1_0 = (
        "import sys; from pathlib import Path; from controlplane.backup import repository as R; "
        "from controlplane.config import Target; assert R.__file__.startswith(sys.argv[1]), R.__file__; "
        "d = Path(sys.argv[2]); r = R.open_repository(sys.argv[3], passphrase='pw', create=True, data_dir=d, "
        "kdf={'memory_cost': 8192, 'time_cost': 1, 'parallelism': 1}); "
        "print(r.create_backup(Target(d, f'sqlite:///{d}/erp.sqlite3')).id)")
    old = subprocess.run([sys.executable, "-c", made_by_1_0, str(code), str(data), url], cwd=code,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                         capture_output=True, text=True, check=True)
    first = old.stdout.split()[-1]
    config = json.loads((tmp_path / "repo" / "config").read_text())
    assert config["version"] == 1 and config["zstd_level"] == 3 and "dictionary" not in config

    repo = open_repository(url, passphrase="pw")
    assert repo.sealer.dictionary is None and repo.check_chunks().ok
    db = data / "erp.sqlite3"
    assert repo.materialize(first, tmp_path / "first").path.read_bytes()[100:] == db.read_bytes()[100:]
    conn = sqlite3.connect(db)
    conn.execute("UPDATE sales_orders SET notes = 'edited after 1.0' WHERE id % 50 = 0")
    conn.commit()
    conn.close()
    target = Target(data, f"sqlite:///{db}")
    second = repo.create_backup(target)
    assert 0 < second.details["chunks_new"] < second.chunk_count * 0.2
    assert repo.check_chunks().ok and len(repo.list_manifests()) == 2
    assert repo.materialize(second.id, tmp_path / "second").path.read_bytes()[100:] == db.read_bytes()[100:]
    assert verify.verify_backup(repo, second.id, 2, target=target).ok
    assert json.loads((tmp_path / "repo" / "config").read_text()) == config


def test_a_repository_made_without_a_database_to_sample_keeps_working(seeded_target, tmp_path):
    """No dictionary (format 1, every chunk compressed on its own): backs up, verifies and restores,
    and stays as it is."""
    url = f"file://{tmp_path / 'old'}"
    open_repository(url, passphrase="pw", create=True, kdf=FAST_KDF)  # no database to sample: as before
    config = json.loads((tmp_path / "old" / "config").read_text())
    assert config["version"] == 1 and "dictionary" not in config
    repo = open_repository(url, passphrase="pw")
    assert repo.sealer.dictionary is None
    backup_restore_check(repo, seeded_target, tmp_path / "out")
    assert json.loads((tmp_path / "old" / "config").read_text()) == config
    assert not (tmp_path / "old" / "dictionaries").exists()


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_dictionary_repository_is_smaller_and_restores_the_same(seeded_target, tmp_path, monkeypatch, processes):
    if processes:  # the sealing and opening processes get the dictionary too
        monkeypatch.setattr(tuning, "SEAL_PROCESS_MIN_BYTES", 0)
        monkeypatch.setattr(tuning, "OPEN_PROCESS_MIN_BYTES", 0)
        monkeypatch.setattr(tuning, "SEAL_RANGE", 64 << 10)
    plain = open_repository(f"file://{tmp_path / 'plain'}", passphrase="pw", create=True, kdf=FAST_KDF)
    url = f"file://{tmp_path / 'dict'}"
    made = open_repository(url, passphrase="pw", create=True, kdf=FAST_KDF, dictionary_from=seeded_target.sqlite_path)
    config = json.loads((tmp_path / "dict" / "config").read_text())
    entry = config["dictionary"]
    assert config["version"] == 2 and entry["version"] == 1 and config["zstd_level"] == dictionary.ZSTD_LEVEL
    assert (tmp_path / "dict" / entry["key"]).exists() and 0 < entry["bytes"] <= dictionary.DICT_SIZE
    assert made.sealer.dictionary is not None
    p, d = plain.create_backup(seeded_target), made.create_backup(seeded_target)
    assert d.chunk_count == p.chunk_count and d.bytes_added < p.bytes_added * 0.9, (d.bytes_added, p.bytes_added)

    repo = open_repository(url, passphrase="pw")  # read back from the store, as a new process does
    assert repo.sealer.dictionary == made.sealer.dictionary
    assert repo.materialize(d.id, tmp_path / "d").path.read_bytes() == \
        plain.materialize(p.id, tmp_path / "p").path.read_bytes()
    backup_restore_check(repo, seeded_target, tmp_path / "out")


def test_a_damaged_or_missing_dictionary_is_refused_clearly(seeded_target, passphrase, tmp_path):
    """Through the CLI as a user meets it: `backup init` trains one; a dictionary altered on disk, or
    gone, stops every command with exit 26 naming it, before anything is written."""
    dd = ["--data-dir", str(seeded_target.data_dir)]
    init = ok_json("backup", "init", "--kdf-memory", "8192", *dd)
    assert init["dictionary_bytes"] > 0 and init["zstd_level"] == dictionary.ZSTD_LEVEL
    first = ok_json("backup", "create", *dd)
    root = seeded_target.data_dir / "backups"
    key = json.loads((root / "config").read_text())["dictionary"]["key"]
    stored = (root / key).read_bytes()
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    damaged = bytearray(stored)
    damaged[len(damaged) // 2] ^= 0x01
    (root / key).write_bytes(bytes(damaged))
    for args in (("backup", "create"), ("backup", "verify", "--level", "1"), ("backup", "list")):
        r = erpctl("--json", *args, *dd)
        error = json.loads(r.stderr.splitlines()[-1])["error"]
        assert r.returncode == 26, (args, r.stderr)
        assert "compression dictionary" in error["detail"] and "fails authentication" in error["detail"]
        assert key in error["fix"]
    (root / key).unlink()
    r = erpctl("--json", "backup", "list", *dd)
    assert r.returncode == 26 and "is missing" in json.loads(r.stderr.splitlines()[-1])["error"]["detail"]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name != key.split("/")[-1]} == \
        {p: t for p, t in before.items() if p.name != key.split("/")[-1]}

    (root / key).write_bytes(stored)  # put back: everything reads again
    assert ok_json("backup", "list", *dd)["backups"][0]["id"] == first["id"]


def test_formats_this_code_does_not_know_are_refused(seeded_target, tmp_path, monkeypatch):
    url = f"file://{tmp_path / 'dict'}"
    open_repository(url, passphrase="pw", create=True, kdf=FAST_KDF, dictionary_from=seeded_target.sqlite_path)
    monkeypatch.setattr(repo_config, "FORMAT_VERSION", 1)  # an erpctl from before dictionaries
    with pytest.raises(BackupError, match="newer than this erpctl understands"):
        open_repository(url, passphrase="pw")
    monkeypatch.undo()
    config_path = tmp_path / "dict" / "config"
    config = json.loads(config_path.read_text())
    config["dictionary"]["version"] = 2
    config_path.write_text(json.dumps(config))
    with pytest.raises(BackupError, match="dictionary of format 2") as exc:
        open_repository(url, passphrase="pw")
    assert exc.value.fix == "Upgrade erpctl." and not isinstance(exc.value, ChunkCorrupt)


def test_too_small_a_database_gets_no_dictionary(tmp_path):
    small = tmp_path / "small.sqlite3"
    conn = sqlite3.connect(small)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    repo = open_repository(f"file://{tmp_path / 'r'}", passphrase=PASSPHRASE, create=True, kdf=FAST_KDF,
                           dictionary_from=small)
    assert repo.config["version"] == 1 and "dictionary" not in repo.config and repo.sealer.dictionary is None


def test_a_large_database_gets_the_larger_dictionary_and_a_small_one_the_smaller():
    """Enough sampled pages (LARGE_FROM_PAGES) train a DICT_SIZE dictionary; fewer, which could not
    fill it, a SMALL_DICT_SIZE one; fewer than MIN_SAMPLE_PAGES none. The pages compress better with
    the dictionary than without it."""
    rng = random.Random(5)
    words = [f"{w}-{rng.randrange(10 ** 6)}" for w in ("partner", "product", "invoice", "order")
             for _ in range(300)]

    def page() -> bytes:  # rows of repeated words and numbers, as an ERP table's leaf page holds
        body = b"".join(f"{rng.choice(words)}|{rng.randrange(10 ** 5)}|EUR|".encode() for _ in range(160))
        return (b"\x0d\x00\x00\x00" + body)[:4096].ljust(4096, b"\x00")

    pages = [page() for _ in range(dictionary.LARGE_FROM_PAGES)]
    large = dictionary.train(pages)
    assert large is not None and len(large) == dictionary.DICT_SIZE > dictionary.SMALL_DICT_SIZE
    small = dictionary.train(pages[:dictionary.LARGE_FROM_PAGES - 1])
    assert small is not None and len(small) == dictionary.SMALL_DICT_SIZE
    assert dictionary.train(pages[:dictionary.MIN_SAMPLE_PAGES - 1]) is None
    held_out = [page() for _ in range(200)]
    plain = sum(len(zstandard.ZstdCompressor(level=1).compress(p)) for p in held_out)
    zdict = zstandard.ZstdCompressionDict(large, dict_type=zstandard.DICT_TYPE_FULLDICT)
    with_dict = zstandard.ZstdCompressor(level=1, dict_data=zdict, write_dict_id=False, write_content_size=False)
    assert sum(len(with_dict.compress(p)) for p in held_out) < plain
