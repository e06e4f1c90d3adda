"""Opening the installation's backup repository: the one place that turns the installation's
settings (backup_repo, backup_key_file, backup_passphrase) into a Repository, for the CLI, the
scheduled jobs and the upgrade's pre-upgrade backup alike."""

from __future__ import annotations

from ..installation import Installation


def open_repo(installation: Installation, *, passphrase: str | None = None, create: bool = False,
              lock_wait: float = 0.0, **kw):
    """The Repository at the installation's backup_repo. `passphrase` (asked on a terminal by the CLI)
    is used when the installation has none."""
    from .repository import open_repository  # the backup code is loaded only by what uses it

    return open_repository(installation.get("backup_repo"),
                           passphrase=installation.get("backup_passphrase") or passphrase,
                           key_file=installation.get("backup_key_file"), create=create,
                           data_dir=installation.data_dir, lock_wait=lock_wait, **kw)
