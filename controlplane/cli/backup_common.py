"""What the `erpctl backup ...` commands share: the repository options and opening it.

The repository URL comes from --repo, else env ERPCTL_BACKUP_REPO, else the data directory's
backup.json ("repo"), else file://<data dir>/backups. The passphrase comes from env
ERPCTL_BACKUP_PASSPHRASE (asked on a terminal when unset), or a key file from --key-file / env
ERPCTL_BACKUP_KEY_FILE.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ..config import Target
from .options import state

REPO_ENV = "ERPCTL_BACKUP_REPO"


def repo_options(fn):
    fn = click.option("--lock-wait", type=click.FloatRange(0), default=0, show_default=True, metavar="SECONDS",
                      help="Wait this long for a conflicting repository lock before giving up.")(fn)
    fn = click.option("--key-file", envvar="ERPCTL_BACKUP_KEY_FILE", metavar="PATH",
                      type=click.Path(dir_okay=False, path_type=Path),
                      help="Key file instead of (or besides) the passphrase. [env ERPCTL_BACKUP_KEY_FILE]")(fn)
    fn = click.option("--repo", envvar=REPO_ENV, metavar="URL",
                      help="Backup repository: file:///abs/path or s3://bucket/prefix. Default: "
                           "file://<data dir>/backups. [env ERPCTL_BACKUP_REPO] Passphrase: env "
                           "ERPCTL_BACKUP_PASSPHRASE; S3: AWS_* variables, ERPCTL_S3_ENDPOINT_URL.")(fn)
    return fn


def repo_url(target: Target, repo: str | None) -> str:
    if repo:
        return repo if "://" in repo else f"file://{Path(repo).expanduser().resolve()}"
    try:
        configured = json.loads((target.data_dir / "backup.json").read_text()).get("repo")
    except (OSError, ValueError):
        configured = None
    return configured or f"file://{target.data_dir / 'backups'}"


def _passphrase(confirm: bool, key_file) -> str | None:
    env = os.environ.get("ERPCTL_BACKUP_PASSPHRASE")
    if env:
        return env
    if key_file is None and sys.stdin.isatty() and sys.stderr.isatty():
        return click.prompt("Repository passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    return None


def open_repo(target: Target, repo: str | None, key_file: Path | None, lock_wait: float = 0,
              create: bool = False, **kw):
    """The Repository (imported here: erpctl's other commands need not load the backup code)."""
    from ..backup.repository import open_repository

    return open_repository(repo_url(target, repo), passphrase=_passphrase(create, key_file), key_file=key_file,
                           create=create, data_dir=target.data_dir, lock_wait=lock_wait, **kw)


def progress():
    """A progress bar on a terminal unless --json."""
    from ..backup.progress import terminal_progress

    return terminal_progress(enabled=not state().json)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
