"""The backup repository: content-addressed, deduplicated, compressed, encrypted chunks in packs,
an index of chunk -> pack, and one manifest per backup, in a directory or an S3 bucket.

    config                  plaintext JSON: format, chunking and pack parameters, key slots
                            (the random master key wrapped by a passphrase (argon2id) or a key file)
    data/ab/<sha256>        packs (see pack.py), each self-describing through its sealed header
    index/<sha256>          sealed chunk -> (pack, offset, length, raw length) for a set of packs
    snapshots/<backup id>   sealed manifests, written last and atomically: a backup exists when its
                            manifest does, and every chunk it names is in an indexed pack by then
    locks/<lock id>         shared locks (backup, check, restore) and exclusive ones (prune)
    dictionaries/<id>       format 2: the sealed zstd dictionary the config names (dictionary.py)
    damaged/<sha256>        sealed marks of chunks a check found damaged or missing (damage.py): the
                            index ignores those locations, so the next backup stores the chunks again

A backup is a state machine whose state is the repository itself: packs are uploaded as they
fill, then an index for them, then the manifest. Killed at any point, it leaves packs (and maybe
an index) but no manifest; the next run finds those packs by listing data/, reads their headers
and reuses their chunks. Prune forgets manifests first and deletes packs only under the exclusive
lock, after a new index without them is written, so a chunk a live manifest needs is never
deleted, not even while a backup runs (a running backup holds a shared lock: prune then only
forgets manifests and defers the deletion of packs to its next run).

    repo = open_repository("file:///srv/backups", passphrase="...")
    manifest = repo.create_backup(target)
    repo.check_chunks()                  # verification level L1 (marks damaged chunks)
    repo.repair(target)                  # what the next backup heals, what is lost for good
    repo.materialize(manifest.id, dir)   # the SQLite file or pg_dump archive, every chunk verified
    repo.prune(RetentionPolicy(keep_last=7, keep_daily=14))

The package, by seam:

    config.py       the config; opening a repository (unlocking its key) or creating one (init)
    core.py         Repository: an open repository, its manifests, and the operations' entry points
    index.py        the index files (chunk -> pack), and adopting packs no index names yet
    chunks.py       reading chunks back (one by one, or pack by pack in the sealing processes)
    packwriter.py   sealing new chunks into packs and uploading them
    create.py       creating a backup
    check.py        verification level L1 (marking what it finds damaged)
    damage.py       the damage marks
    repair.py       repair: check, mark, and tell what the next backup heals and what is lost
    materialize.py  rebuilding a backup's file
    prune.py        retention: forgetting backups, deleting and repacking packs
    records.py      what the operations return (Manifest, CheckResult, Artifact, PruneResult)
    tuning.py       threads, processes and sizes
"""

from .config import DEFAULT_PACK_SIZE, DEFAULT_ZSTD_LEVEL, FORMAT_VERSION, new_config, open_repository
from .core import Repository
from .records import Artifact, CheckResult, Loc, Manifest, Progress, PruneResult

__all__ = ["DEFAULT_PACK_SIZE", "DEFAULT_ZSTD_LEVEL", "FORMAT_VERSION", "Artifact", "CheckResult", "Loc", "Manifest",
           "Progress", "PruneResult", "Repository", "new_config", "open_repository"]
