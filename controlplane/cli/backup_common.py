"""What the `erpctl backup ...` commands share: the repository options and opening it.

The repository and its key are the installation's settings (controlplane/installation.py): --repo,
else env ERPCTL_BACKUP_REPO, else [backup] repo in erpctl.toml, else the data directory's
backup.json ("repo"), else file://<data dir>/backups. The passphrase comes from env
ERPCTL_BACKUP_PASSPHRASE (asked on a terminal when unset), or a key file from --key-file, env
ERPCTL_BACKUP_KEY_FILE or [backup] key_file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..backup import access
from ..backup.progress import terminal_progress
from ..config import Target
from ..installation import Installation
from .options import state

REPO_ENV = "ERPCTL_BACKUP_REPO"


def repo_options(fn):
    fn = click.option("--lock-wait", type=click.FloatRange(0), default=0, show_default=True, metavar="SECONDS",
                      help="Wait this long for a conflicting repository lock before giving up.")(fn)
    fn = click.option("--key-file", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path),
                      help="Key file instead of (or besides) the passphrase. [env ERPCTL_BACKUP_KEY_FILE, "
                           "erpctl.toml [backup] key_file]")(fn)
    fn = click.option("--repo", metavar="URL",
                      help="Backup repository: file:///abs/path or s3://bucket/prefix. Default: [backup] repo "
                           "in erpctl.toml, else file://<data dir>/backups. [env ERPCTL_BACKUP_REPO] "
                           "Passphrase: env ERPCTL_BACKUP_PASSPHRASE; S3: AWS_* variables, "
                           "ERPCTL_S3_ENDPOINT_URL.")(fn)
    return fn


def installation(target: Target, repo: str | None, key_file: Path | None) -> Installation:
    """The target's installation with the repository flags given on the command line."""
    return Installation.open(target.data_dir, target.database_url, backup_repo=repo, backup_key_file=key_file)


def repo_url(target: Target, repo: str | None) -> str:
    return installation(target, repo, None).get("backup_repo")


def ask_passphrase(confirm: bool = False) -> str | None:
    """The passphrase asked on a terminal (None when not on one)."""
    if sys.stdin.isatty() and sys.stderr.isatty():
        return click.prompt("Repository passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    return None


def _passphrase(inst: Installation, confirm: bool) -> str | None:
    if inst.get("backup_passphrase") or inst.get("backup_key_file") is not None:
        return None
    return ask_passphrase(confirm)


def open_repo(target: Target, repo: str | None, key_file: Path | None, lock_wait: float = 0,
              create: bool = False, **kw):
    """The installation's Repository, --repo and --key-file first."""
    inst = installation(target, repo, key_file)
    return access.open_repo(inst, passphrase=_passphrase(inst, create), create=create, lock_wait=lock_wait, **kw)


def open_for_backup(target: Target, repo: str | None, key_file: Path | None, lock_wait: float = 0):
    """open_repo for `erpctl backup create`: failing to open it is recorded as a failed backup."""
    inst = installation(target, repo, key_file)
    return access.open_for_backup(inst, passphrase=_passphrase(inst, False), lock_wait=lock_wait)


def progress():
    """A progress bar on a terminal unless --json."""
    return terminal_progress(enabled=not state().json)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
