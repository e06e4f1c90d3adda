"""What the pitr commands share: the installation and its point-in-time recovery record."""

from __future__ import annotations

from ..errors import PitrNotConfigured
from ..pitr import config as pitr_config
from .options import target


def open_pitr(data_dir, database_url):
    """(installation, its PitrConfig)."""
    inst = target(data_dir, database_url)
    return inst, pitr_config.load(inst.data_dir)


def require_postgresql(inst) -> None:
    if inst.backend != "postgresql":
        raise PitrNotConfigured(f"point-in-time recovery needs PostgreSQL; this installation's database is "
                                f"{inst.backend}", fix="Point --database-url (or [database] url in erpctl.toml) at "
                                                       "the PostgreSQL database; SQLite is backed up by "
                                                       "'erpctl backup create'.")
