"""Opening the installation's backup repository: the one place that turns the installation's
settings (backup_repo, backup_key_file, backup_passphrase) into a Repository, for the CLI, the
scheduled jobs and the upgrade's pre-upgrade backup alike."""

from __future__ import annotations

import time

from ..errors import SettingInvalid
from ..installation import Installation

MIN_PASSPHRASE = 12
MIN_DISTINCT = 5


def check_passphrase(passphrase: str) -> None:
    """A new repository's passphrase: at least MIN_PASSPHRASE characters, MIN_DISTINCT of them different
    (anyone holding the repository may guess offline; argon2id only slows each guess down)."""
    if len(passphrase) < MIN_PASSPHRASE or len(set(passphrase)) < MIN_DISTINCT:
        raise SettingInvalid(
            f"the backup passphrase is too weak ({len(passphrase)} characters, {len(set(passphrase))} different): "
            f"a new repository needs at least {MIN_PASSPHRASE} characters with {MIN_DISTINCT} different",
            fix="Choose a longer passphrase (e.g. four random words) in ERPCTL_BACKUP_PASSPHRASE, or use a key "
                "file instead (--key-file).", setting="backup_passphrase")


def open_repo(installation: Installation, *, passphrase: str | None = None, create: bool = False,
              lock_wait: float = 0.0, **kw):
    """The Repository at the installation's backup_repo. `passphrase` (asked on a terminal by the CLI)
    is used when the installation has none."""
    from .repository import open_repository  # the backup code is loaded only by what uses it

    passphrase = installation.get("backup_passphrase") or passphrase
    if create and passphrase is not None:
        check_passphrase(passphrase)
    return open_repository(installation.get("backup_repo"),
                           passphrase=passphrase,
                           key_file=installation.get("backup_key_file"), create=create,
                           data_dir=installation.data_dir, lock_wait=lock_wait, **kw)


def open_for_backup(installation: Installation, *, passphrase: str | None = None, lock_wait: float = 0.0):
    """open_repo for taking a backup: a repository that cannot be opened (unreachable, unreadable, the
    wrong passphrase or key) is a failed backup, recorded as a failure later in the backup is (results
    'backup.create' for `erpctl status`, the metrics and the alerts; the evidence log), then raised."""
    from .repository.records import record_outcome

    t0 = time.perf_counter()
    try:
        return open_repo(installation, passphrase=passphrase, lock_wait=lock_wait)
    except Exception as exc:
        record_outcome(installation.data_dir, "backup.create", False, {
            "repository": installation.get("backup_repo"), "error": getattr(exc, "detail", None) or str(exc),
            "error_type": type(exc).__name__, "stage": "opening the repository",
            "duration_seconds": round(time.perf_counter() - t0, 3)})
        raise
