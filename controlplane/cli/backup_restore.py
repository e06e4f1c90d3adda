"""erpctl backup restore: fail-closed restore (verified through L3, swapped in atomically)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..backup import restore as restorer
from ..backup import verify as ladder
from .backup_common import open_repo, repo_options
from .backup_verify import ladder_progress, render_one
from .options import emit, json_option, state, target, target_options


def render(r: dict) -> str:
    lines = render_one(r["verification"])
    if r.get("recovered"):
        rec = r["recovered"]
        lines.insert(0, f"an interrupted restore ({rec['run']}, phase {rec['interrupted_phase']}) was "
                        f"{rec['result'].replace('_', ' ')} first")
    if r["into"] == "live":
        lines.append(f"restored backup {r['backup'][:8]} into {r['database']} in {r['duration_seconds']} s: "
                     f"{r['swap']}")
        if r.get("previous_database"):
            lines.append(f"  the previous database is kept as {r['previous_database']}")
    else:
        lines.append(f"restored backup {r['backup'][:8]} to {r['path']} in {r['duration_seconds']} s "
                     "(for inspection; the live database was not touched)")
    return "\n".join(lines)


@click.command()
@click.argument("backup_id", metavar="[ID]", required=False)
@click.option("--recover", "recover_only", is_flag=True,
              help="Only finish or roll back a restore that was interrupted (killed), then exit.")
@click.option("--target", "into", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Restore into DIR for inspection (erp.sqlite3, or erp.pgdump); the live database is not touched.")
@click.option("--yes", is_flag=True, help="Replace the live database without asking.")
@click.option("--keep-previous", is_flag=True,
              help="PostgreSQL: keep the replaced database as <name>_pre_restore_<time> instead of dropping it.")
@click.option("--scratch-database-url", envvar="ERPCTL_SCRATCH_DATABASE_URL", metavar="URL",
              help="With --target: PostgreSQL server for verifying a PostgreSQL backup. "
                   "[env ERPCTL_SCRATCH_DATABASE_URL]")
@repo_options
@target_options
@json_option
def restore(backup_id, recover_only, into, yes, keep_previous, scratch_database_url, repo, key_file, lock_wait, data_dir,
            database_url):
    """Restore a backup, fail-closed.

    The backup is materialised into a temporary location and verified through L3 (chunks, engine
    checks, row counts and checksums, invariants). Only then is it swapped in, atomically, with the
    ERP in maintenance mode during the swap. When anything fails the live data is untouched (exit 29
    when verification refused the backup, 30 when the swap failed and was rolled back). A restore
    that was killed is finished or rolled back by the next run (or by --recover).
    """
    t = target(data_dir, database_url)
    if recover_only:
        done = restorer.recover(t)
        emit({"recovered": done}, "nothing to recover: no restore was interrupted" if done is None else
             f"the interrupted restore {done['run']} (backup {done['backup'][:8]}, phase "
             f"{done['interrupted_phase']}) was {done['result'].replace('_', ' ')}")
        return
    if not backup_id:
        raise click.UsageError("give the ID of the backup to restore (or --recover)")
    if into is None and not yes:
        if state().json or not sys.stdin.isatty():
            raise click.UsageError("restoring replaces the live database: pass --yes (or --target DIR to inspect)")
        click.confirm(f"Replace the live database {t.display_url} with backup {backup_id}?", abort=True, err=True)
    repository = open_repo(t, repo, key_file, lock_wait)
    if backup_id == "latest":  # this database's own newest backup, in a repository several databases share
        backup_id = ladder.select_backups(repository, ["latest"], source=t.display_url)[0]
    with ladder_progress() as bar:
        result = restorer.restore(t, repository, backup_id, into=into, progress=bar, keep_previous=keep_previous,
                                  scratch_database_url=scratch_database_url)
    emit(result, render(result))
