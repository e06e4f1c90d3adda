"""A repository's config, and opening or creating (init) a repository.

    config    plaintext JSON at the repository's root: format and version, chunking, pack and
              compression parameters, and the key slots (the random master key wrapped by a
              passphrase (argon2id) or a key file)

The parameters are those of the repository's creation: a repository keeps them (its zstd level,
its pack size, its chunking) whatever the defaults of later versions.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from ...config import write_private
from ...errors import BackupError, RepositoryNotInitialised, WrongKey
from .. import crypto, dictionary
from ..chunker import CDC_AVG_BITS, CDC_MAX, CDC_MIN, MIN_SQLITE_CHUNK
from ..crypto import AuthenticationFailed, MasterKey, Sealer
from ..store import FileStore, NotFound, open_store
from .core import Repository
from .records import now_iso

log = logging.getLogger("controlplane.backup")

FORMAT_VERSION = 2  # the newest format this code reads: 2 = 1 with a compression dictionary (dictionary.py)
DEFAULT_PACK_SIZE = 8 << 20
# zstd level of new repositories (kept in their config; a repository keeps the one it was made with).
# Chunks are single 4 KiB pages: on the bench's 600 MB ERP database, level -1 compresses them in
# 0.9 s of CPU against 1.5 s at level 1 and 1.6 s at level 3 (the most of what sealing costs),
# to 28 % of their size instead of 25 %.
DEFAULT_ZSTD_LEVEL = -1


def _repository(store, config: dict, master: MasterKey, lock_wait: float) -> Repository:
    """The repository as its config says: chunks sealed at its zstd level (with its dictionary, if
    it has one), packs of its size."""
    entry = config.get("dictionary")  # see dictionary.py
    sealer = Sealer(master, int(config.get("zstd_level", 3)),
                    dictionary.load(store, Sealer(master), entry) if entry else None)
    return Repository(store, config, sealer,
                      int(config.get("pack_size", DEFAULT_PACK_SIZE)), lock_wait=lock_wait)


def new_config(pack_size: int | None, zstd_level: int | None = None) -> dict:
    """The config of a new repository, without key slots yet."""
    return {"format": "erpctl-backup-repository", "version": 1, "id": secrets.token_hex(16),
            "created_at": now_iso(), "pack_size": int(pack_size or DEFAULT_PACK_SIZE),
            "zstd_level": DEFAULT_ZSTD_LEVEL if zstd_level is None else int(zstd_level),
            "sqlite_min_chunk": MIN_SQLITE_CHUNK,
            "cdc": {"window": 64, "min": CDC_MIN, "avg_bits": CDC_AVG_BITS, "max": CDC_MAX},
            "encryption": "AES-256-GCM, chunk ids BLAKE2b-256 keyed", "compression": "zstd", "keys": []}


def open_repository(url: str, *, passphrase: str | None = None, key_file: Path | None = None,
                    create: bool = False, data_dir: Path | None = None, kdf: dict | None = None,
                    pack_size: int | None = None, lock_wait: float = 0.0, zstd_level: int | None = None,
                    dictionary_from: Path | None = None) -> Repository:
    """Open (or with create=True, create if missing) the repository at file:///abs/path or
    s3://bucket/prefix. A repository created with dictionary_from (an SQLite database) gets a zstd
    dictionary trained on its pages (dictionary.py: plain reads of the file, so no SQLite connection
    of this process may have it open). The passphrase defaults to env ERPCTL_BACKUP_PASSPHRASE and the key file to
    env ERPCTL_BACKUP_KEY_FILE. Creating with a key file that does not exist writes a new random one
    (mode 0600). A wrong key raises WrongKey before anything is written."""
    passphrase = passphrase if passphrase is not None else os.environ.get("ERPCTL_BACKUP_PASSPHRASE") or None
    if key_file is None and os.environ.get("ERPCTL_BACKUP_KEY_FILE"):
        key_file = Path(os.environ["ERPCTL_BACKUP_KEY_FILE"])
    store = open_store(url, data_dir)
    try:
        raw = store.get("config")
    except NotFound:
        raw = None
    if raw is None:
        if not create:
            raise RepositoryNotInitialised(f"there is no backup repository at {store.describe()}",
                                           fix="Create it with 'erpctl backup init --repo URL' (or check --repo / "
                                               "ERPCTL_BACKUP_REPO).")
        return _init(store, passphrase, key_file, kdf, pack_size, lock_wait, zstd_level, dictionary_from)
    try:
        config = json.loads(raw)
        assert config.get("format") == "erpctl-backup-repository"
    except (ValueError, AssertionError):
        raise BackupError(f"{store.describe()} holds a 'config' that is not an erpctl backup repository's",
                          fix="Point --repo at an erpctl repository, or at an empty location to create one.") from None
    if int(config.get("version", 0)) > FORMAT_VERSION:
        raise BackupError(f"the repository format {config['version']} is newer than this erpctl understands",
                          fix="Upgrade erpctl.")
    master = _unlock(config, store, passphrase, key_file)
    return _repository(store, config, master, lock_wait)


def _key_secret(key_file: Path | None) -> bytes | None:
    if key_file is None:
        return None
    try:
        return crypto.read_key_file(key_file)
    except FileNotFoundError:
        raise WrongKey(f"the key file {key_file} does not exist",
                       fix="Pass the repository's key file (--key-file or ERPCTL_BACKUP_KEY_FILE).") from None
    except (OSError, ValueError) as exc:
        raise WrongKey(f"cannot use the key file {key_file}: {exc}", fix="Pass the repository's key file.") from None


def _unlock(config: dict, store, passphrase: str | None, key_file: Path | None) -> MasterKey:
    if passphrase is None and key_file is None:
        raise WrongKey(f"the backup repository at {store.describe()} is encrypted and no key was given",
                       fix="Set ERPCTL_BACKUP_PASSPHRASE (or pass --key-file / set ERPCTL_BACKUP_KEY_FILE).")
    secret = _key_secret(key_file)
    for slot in config.get("keys", []):
        try:
            return crypto.unwrap(slot, passphrase=passphrase, key_file_secret=secret)
        except AuthenticationFailed:
            continue
    what = " and ".join(x for x, given in (("the passphrase", passphrase), (f"the key file {key_file}", key_file))
                        if given)
    raise WrongKey(f"{what} does not open the backup repository at {store.describe()}; nothing was changed",
                   fix="Use the passphrase (ERPCTL_BACKUP_PASSPHRASE) or key file the repository was created with.")


def _init(store, passphrase, key_file, kdf, pack_size, lock_wait, zstd_level=None, dictionary_from=None
          ) -> Repository:
    if passphrase is None and key_file is None:
        raise WrongKey("a new backup repository needs a passphrase or a key file",
                       fix="Set ERPCTL_BACKUP_PASSPHRASE, or pass --key-file PATH (created if it does not exist).")
    if isinstance(store, FileStore):
        store.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        store.exists_root()
    master = MasterKey.generate()
    trained = (dictionary.train(dictionary.sample_pages(dictionary_from, MIN_SQLITE_CHUNK))
               if dictionary_from is not None else None)
    config = new_config(pack_size, dictionary.ZSTD_LEVEL if zstd_level is None and trained else zstd_level)
    if trained is not None:  # stored before the config that names it: a config never names a missing one
        config["dictionary"], sealed = dictionary.seal(Sealer(master), trained)
        config["version"] = 2
        store.put_new(config["dictionary"]["key"], sealed)
    if passphrase is not None:
        config["keys"].append(crypto.wrap_with_passphrase(master, passphrase, kdf))
    if key_file is not None:
        key_file = Path(key_file)
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            write_private(key_file, crypto.new_key_file_text())
        config["keys"].append(crypto.wrap_with_key_file(master, _key_secret(key_file)))
    if not store.put_new("config", json.dumps(config, indent=1).encode()):
        # another run created it meanwhile: open that one (with the key given)
        config = json.loads(store.get("config"))
        return _repository(store, config, _unlock(config, store, passphrase, key_file), lock_wait)
    repo = _repository(store, config, master, lock_wait)
    repo.created = True
    log.info("backup repository created", extra={"repository": store.url, "id": config["id"]})
    return repo
