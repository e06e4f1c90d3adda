"""erpctl backup init: create an encrypted backup repository (a directory or an S3 prefix)."""

from __future__ import annotations

from pathlib import Path

import click

from erp_core.errors import Conflict

from .backup_common import open_repo, repo_options
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    keys = " and ".join(r["key_slots"])
    trained = f", a {r['dictionary_bytes'] // 1024} KiB zstd dictionary of its pages" if r["dictionary_bytes"] else ""
    return f"created backup repository {r['repository']} (id {r['id'][:8]}, unlocked by {keys}{trained})"


@click.command()
@click.option("--pack-size", type=click.IntRange(64 << 10, 512 << 20), default=None, metavar="BYTES",
              help="Target size of a pack object (default 8 MiB).")
@click.option("--zstd-level", type=click.IntRange(-7, 19), default=None, metavar="N",
              help="zstd level of the repository's chunks (default 2 with a dictionary trained on an SQLite "
                   "database's pages, else -1: fast; higher levels make a repository a little smaller and "
                   "backups slower). Fixed when the repository is created.")
@click.option("--kdf-memory", type=click.IntRange(8192, 4 << 20), default=None, metavar="KIB", hidden=True,
              help="argon2id memory cost in KiB (default 65536).")
@repo_options
@target_options
@json_option
def init(pack_size, zstd_level, kdf_memory, repo, key_file, lock_wait, data_dir, database_url):
    """Create the backup repository.

    The key is a passphrase (env ERPCTL_BACKUP_PASSPHRASE, asked on a terminal) stretched with argon2id,
    or a key file (--key-file; a new random one is written when the path does not exist), or both.
    Keep them safe: without them no backup can be read. For an SQLite database, a zstd dictionary is
    trained on a sample of its pages and kept (encrypted) in the repository: its chunks compress better.
    """
    t = target(data_dir, database_url, backup_key_file=key_file)
    key_file = t.get("backup_key_file")  # --key-file, else env ERPCTL_BACKUP_KEY_FILE, else [backup] key_file
    kdf = {"memory_cost": kdf_memory} if kdf_memory else None
    repository = open_repo(t, repo, Path(key_file) if key_file else None, lock_wait, create=True, kdf=kdf,
                           pack_size=pack_size, zstd_level=zstd_level,
                           dictionary_from=t.sqlite_path if t.backend == "sqlite" else None)
    if not repository.created:
        raise Conflict(f"a backup repository already exists at {repository.url}",
                       fix="Use it as it is (the key you gave opens it), or choose another --repo.")
    result = {"repository": repository.url, "id": repository.config["id"], "created": True,
              "pack_size": repository.pack_size, "zstd_level": repository.config["zstd_level"],
              "key_slots": [s["kind"] for s in repository.config["keys"]],
              "dictionary_bytes": (repository.config.get("dictionary") or {}).get("bytes"),
              "key_file": str(key_file) if key_file else None}
    emit(result, render(result))
