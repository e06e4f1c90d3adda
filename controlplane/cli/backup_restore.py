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


def render_loss(found: dict, limit: int = 20) -> list[str]:
    """The writes made since the backup, grouped by kind with counts, then the first `limit` of them; what
    the live database could not give."""
    counted = "an unknown number of" if found["count"] is None else str(found["count"])
    lines = [f"{counted} write(s) made since backup {found['backup'][:8]} ({found['backup_time']})"
             + (f", {found['first_at']} .. {found['last_at']}:" if found["count"] else "")]
    lines += [f"  could not read {what}" for what in found.get("unreadable") or []]
    lines += [f"  {c:6d}  {kind}" for kind, c in found["by_kind"].items()]
    for e in found.get("entries", [])[:limit]:
        lines.append(f"  {e['at']}  {e['actor']:<12} {e['action']:<6} {e['entity']} {e['entity_id']}"
                     + (f" {e['number']}" if e.get("number") else ""))
    if len(found.get("entries", [])) > limit:
        lines.append(f"  ... and {len(found['entries']) - limit} more (--json lists them all)")
    return lines


def render_dry_run(r: dict) -> str:
    if not r["in_place"]:
        return f"there is no live database: restoring backup {r['backup'][:8]} discards nothing"
    lines = ["dry run: nothing was changed", *render_loss(r)]
    if not (r.get("maintenance") or {}).get("enabled"):
        lines.append("the ERP takes writes: this number grows until it is read-only ('erpctl erp maintenance on')")
    lines.append(f"to restore, discarding them: erpctl backup restore --yes --discard-writes {r['count'] or 0} "
                 f"{r['backup'][:12]}")
    return "\n".join(lines)


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
        if r.get("loss"):
            w = r["loss"]
            lines.append(f"  discarded {'every' if w['discarded'] is None else w['discarded']} write(s) made since the "
                         f"backup ({w['backup_time']}); their list, for the business: {w['list_file']}")
            lines += [f"  could not read {what}" for what in w.get("unreadable") or []]
            raised = sum(len(v) for v in w["numbering_raised"].values())
            lines.append(f"  numbering raised to the replaced database's ({raised} series and sequences): "
                         "no id or document number is handed out twice")
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
@click.option("--discard-writes", type=click.IntRange(min=0), metavar="N",
              help="Confirm that the restore discards the N writes made since the backup (the number --dry-run "
                   "shows); refused (exit 31) when it is not the number found with the ERP read-only.")
@click.option("--dry-run", is_flag=True,
              help="Only list the writes made since the backup that restoring it in place would discard.")
@click.option("--keep-previous", is_flag=True,
              help="PostgreSQL: keep the replaced database as <name>_pre_restore_<time> instead of dropping it.")
@click.option("--scratch-database-url", envvar="ERPCTL_SCRATCH_DATABASE_URL", metavar="URL",
              help="With --target: PostgreSQL server for verifying a PostgreSQL backup. "
                   "[env ERPCTL_SCRATCH_DATABASE_URL]")
@repo_options
@target_options
@json_option
def restore(backup_id, recover_only, into, yes, discard_writes, dry_run, keep_previous, scratch_database_url, repo,
            key_file, lock_wait, data_dir, database_url):
    """Restore a backup, fail-closed.

    The backup is materialised into a temporary location and verified through L3 (chunks, engine
    checks, row counts and checksums, invariants). Only then is it swapped in, atomically, with the
    ERP in maintenance mode during the swap. When anything fails the live data is untouched (exit 29
    when verification refused the backup, 30 when the swap failed and was rolled back). A restore
    that was killed is finished or rolled back by the next run (or by --recover).

    Restoring in place discards the writes made since the backup: --dry-run lists them (grouped, with
    document numbers); the restore lists them again with the ERP read-only and goes on only when
    --discard-writes names their number (exit 31 otherwise, nothing changed). Their list is kept in
    the data directory (restores/<run>-discarded.json) and the restored database never hands out again
    an id or document number the replaced one had handed out.
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
    if dry_run:
        repository = open_repo(t, repo, key_file, lock_wait)
        found = restorer.discarded_by(t, repository, _resolve(repository, t, backup_id))
        emit(found, render_dry_run(found))
        return
    if into is None and not yes:
        if state().json or not sys.stdin.isatty():
            raise click.UsageError("restoring replaces the live database: pass --yes (or --target DIR to inspect)")
        click.confirm(f"Replace the live database {t.display_url} with backup {backup_id}?", abort=True, err=True)
    repository = open_repo(t, repo, key_file, lock_wait)
    with ladder_progress() as bar:
        result = restorer.restore(t, repository, _resolve(repository, t, backup_id), into=into, progress=bar,
                                  keep_previous=keep_previous, scratch_database_url=scratch_database_url,
                                  discard_writes=discard_writes)
    emit(result, render(result))


def _resolve(repository, t, backup_id: str) -> str:
    if backup_id == "latest":  # this database's own newest backup, in a repository several databases share
        return ladder.select_backups(repository, ["latest"], source=t.display_url)[0]
    return backup_id
