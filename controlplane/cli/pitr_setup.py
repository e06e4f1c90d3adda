"""erpctl pitr setup: write pgBackRest's configuration for the installation's PostgreSQL cluster, check
that the cluster archives its WAL into it (or set it with --configure), create the stanza, run
`pgbackrest check`."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.engine import make_url

from .. import config
from ..errors import PitrNotConfigured
from ..evidence import EvidenceLog
from ..pitr import cluster, pgbackrest
from ..pitr import config as pitr_config
from .options import emit, json_option, target, target_options
from .pitr_common import require_postgresql


def _server_facts(url) -> dict:
    info = {"host": url.host or "127.0.0.1", "port": url.port or 5432, "user": url.username or "postgres",
            "dbname": url.database or "postgres"}
    try:
        rows = dict(cluster.query(info, "SELECT name, setting FROM pg_settings WHERE name IN "
                                        "('unix_socket_directories', 'data_directory', 'server_version_num', 'port')"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the same problem
        raise PitrNotConfigured(f"the database server at {url.host}:{url.port} did not answer: {exc}",
                                fix="Start it, or point --database-url at it.") from None
    return rows


@click.command(name="setup")
@target_options
@click.option("--pg-data", metavar="DIR", type=click.Path(file_okay=False),
              help="The cluster's data directory (default: what the server reports, SHOW data_directory).")
@click.option("--pgbackrest-dir", "home", metavar="DIR", required=True, type=click.Path(file_okay=False),
              help="pgBackRest's directory: its configuration, repository (DIR/repo), logs and locks; owned by "
                   "the cluster's OS user.")
@click.option("--stanza", default="erp", show_default=True, help="pgBackRest's name for the cluster.")
@click.option("--pg-bin", metavar="DIR", help="PostgreSQL's binaries (default: Debian's for the server's version).")
@click.option("--configure", is_flag=True, help="Set wal_level, archive_mode and archive_command with ALTER SYSTEM "
                                                "when they are not pgBackRest's (a restart may still be needed).")
@json_option
def setup(data_dir, database_url, pg_data, home, stanza, pg_bin, configure):
    """Set up point-in-time recovery with pgBackRest for the installation's PostgreSQL cluster."""
    inst = target(data_dir, database_url)
    require_postgresql(inst)
    url = make_url(inst.database_url)
    facts = _server_facts(url)
    pg_data = str(Path(pg_data or facts["data_directory"]).resolve())
    if not Path(pg_data, "PG_VERSION").exists():
        raise PitrNotConfigured(f"{pg_data} is not a PostgreSQL data directory (no PG_VERSION) readable here",
                                fix="Run erpctl on the database host, with --pg-data naming the cluster's directory.")
    cfg = pitr_config.PitrConfig(
        stanza=stanza, home=str(Path(home).resolve()), pg_data=pg_data, pg_port=int(facts["port"]),
        pg_socket=facts["unix_socket_directories"].split(",")[0].strip(),
        pg_bin=cluster.bin_dir(pg_bin, int(facts["server_version_num"])), os_user=cluster.owner(pg_data),
        pg_user=url.username or "postgres", database=url.database)
    result = pgbackrest.setup(cfg, configure)
    config.ensure_data_dir(inst)
    pitr_config.save(inst.data_dir, cfg)
    EvidenceLog(inst.data_dir).append("pitr.setup", {**result, "pg_data": cfg.pg_data, "port": cfg.pg_port})
    emit({**result, "config": cfg.as_dict()},
         f"pgBackRest stanza {stanza!r} set up for {pg_data} (port {cfg.pg_port}, OS user {cfg.os_user})\n"
         f"  repository       {cfg.repo}\n  archive_command  {cfg.archive_command()}\n"
         f"  check            {result['check']}\nNext: 'erpctl pitr backup' takes the first full backup.")
