"""erpctl pitr backup: a pgBackRest backup (full, differential or incremental) of the cluster."""

from __future__ import annotations

import click

from ..pitr import pgbackrest
from .backup_common import human_bytes
from .options import emit, json_option, target_options
from .pitr_common import open_pitr


@click.command(name="backup")
@target_options
@click.option("--type", "kind", type=click.Choice(["full", "diff", "incr"]), default="full", show_default=True,
              help="full: every file; diff: what changed since the last full; incr: since the last backup.")
@json_option
def backup(data_dir, database_url, kind):
    """Take a pgBackRest backup of the cluster; recorded in the evidence log."""
    inst, cfg = open_pitr(data_dir, database_url)
    made = pgbackrest.backup(cfg, inst.data_dir, kind)
    emit(made, f"backup {made['label']} ({made['type']}): {human_bytes(made['size_bytes'] or 0)} of cluster, "
               f"{human_bytes(made['repo_bytes'] or 0)} stored, {made['seconds']} s; ended {made['stopped']}")
