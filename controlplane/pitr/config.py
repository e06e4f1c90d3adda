"""What 'erpctl pitr setup' records in the data directory (layout key 'pitr'): the PostgreSQL cluster
erpctl protects and pgBackRest's stanza and directory.

pgBackRest's directory ("home") holds everything pgBackRest itself reads and writes, owned by the
cluster's OS user (PostgreSQL's archive_command runs as that user):

    <home>/pgbackrest.conf   written by erpctl (stanza, repository, cluster path, port, socket)
    <home>/repo/             pgBackRest's repository (full/differential backups and the WAL archive)
    <home>/log/, <home>/lock/
    <home>/restores/<run>/   clusters restored by 'erpctl pitr restore' / 'verify'
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..errors import PitrNotConfigured
from ..fsutil import atomic_write_text

VERSION = 1


@dataclass(frozen=True)
class PitrConfig:
    stanza: str
    home: str
    pg_data: str
    pg_port: int
    pg_socket: str
    pg_bin: str
    os_user: str
    pg_user: str
    database: str
    version: int = VERSION

    @property
    def conf(self) -> Path:
        return Path(self.home) / "pgbackrest.conf"

    @property
    def repo(self) -> Path:
        return Path(self.home) / "repo"

    @property
    def restores(self) -> Path:
        return Path(self.home) / "restores"

    def conninfo(self, dbname: str | None = None) -> dict:
        """How to reach the live cluster (its Unix socket, as pgBackRest does)."""
        return {"host": self.pg_socket, "port": self.pg_port, "user": self.pg_user,
                "dbname": dbname or self.database}

    def archive_command(self) -> str:
        return f"pgbackrest --config={self.conf} --stanza={self.stanza} archive-push %p"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def save(data_dir, cfg: PitrConfig) -> None:
    atomic_write_text(layout.path(data_dir, "pitr"), json.dumps(cfg.as_dict(), indent=2) + "\n")


def load(data_dir) -> PitrConfig:
    path = layout.path(data_dir, "pitr")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PitrNotConfigured("point-in-time recovery is not set up for this data directory",
                                fix="Run 'erpctl pitr setup --pg-data DIR' against the PostgreSQL cluster "
                                    "(docs/pitr.md).") from None
    except (OSError, ValueError) as exc:
        raise PitrNotConfigured(f"the point-in-time recovery record cannot be read: {exc}",
                                fix="Run 'erpctl pitr setup' again: it rewrites the record.") from None
    if int(data.get("version", 1)) > VERSION:
        raise PitrNotConfigured(f"the point-in-time recovery record was written by a newer erpctl "
                                f"(version {data.get('version')})", fix="Use that erpctl, or a newer one.")
    fields = {f.name for f in dataclasses.fields(PitrConfig)}
    return PitrConfig(**{k: v for k, v in data.items() if k in fields})
