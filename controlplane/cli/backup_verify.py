"""erpctl backup verify: the verification ladder (L1 chunks, L2 engine, L3 content, L4 service)."""

from __future__ import annotations

import contextlib
import time

import click

from ..backup import verify as ladder
from ..errors import VerificationFailed
from .backup_common import open_repo, progress, repo_options
from .options import emit, json_option, target, target_options

REPO_PHASES = ("check", "materialize")


@contextlib.contextmanager
def ladder_progress():
    """The repository's byte counts as bars on a terminal, the ladder's own steps as lines."""
    with progress() as bar:
        if bar is None:
            yield None
            return

        def update(phase, done, total):
            if phase in REPO_PHASES:
                bar(phase, done or 0, total)
            else:
                click.echo(f"  {phase}", err=True)
        yield update


def render_one(v: dict) -> list[str]:
    head = "ok" if v["ok"] else f"FAILED at L{v['failed_level']}"
    lines = [(f"backup {v['backup'][:8]} ({v['engine']}): {head}, levels 1..{v['requested_level']} "
              f"in {v['duration_seconds']} s")]
    for l in v["levels"]:
        mark = "ok    " if l["ok"] else "FAILED"
        lines.append(f"  L{l['level']} {l['name']:<8} {mark} {l['duration_seconds']:>8.3f} s  {l['summary']}")
        for p in l["problems"][:20]:
            lines.append("       - " + _problem(p))
        if len(l["problems"]) > 20:
            lines.append(f"       ... and {len(l['problems']) - 20} more (--json lists them all)")
    return lines


def _problem(p: dict) -> str:
    what = p.get("what")
    if what == "chunk":
        return (f"chunk {p.get('chunk')} in pack {p.get('pack') or '?'}: {p.get('reason') or p.get('detail')}; "
                f"needed by backup(s): {', '.join(p.get('backups') or []) or '?'}")
    if what == "table":
        return f"[table {p['table']}] {p['detail']}"
    if what == "invariant":
        return f"[invariant {p['invariant']}] {p['detail']}"
    if what == "engine":
        return f"[{p.get('check')}] {p['detail']}"
    if what == "api":
        return f"[{p.get('path')}] {p['detail']}"
    return str(p.get("detail") or p)


def render(r: dict) -> str:
    lines = []
    for v in r["backups"]:
        lines += render_one(v)
    failed = [v for v in r["backups"] if not v["ok"]]
    lines.append(f"{len(r['backups']) - len(failed)} of {len(r['backups'])} backup(s) passed L1..L{r['level']}")
    return "\n".join(lines)


def _verify_one(repository, backup_id: str, level: int, t, scratch_database_url, bar) -> dict:
    """Verify one backup. Only the data directory's own database's backups are recorded there (results,
    evidence log: "recorded"), and one of them verified through L3 or more is its restore test."""
    from ..backup import restore

    own = ladder.source_of(repository, backup_id) == t.display_url
    t0 = time.perf_counter()
    v = ladder.verify_backup(repository, backup_id, level, target=t, scratch_database_url=scratch_database_url,
                             progress=bar, record=own)
    if own and v.requested_level >= restore.RESTORE_TEST_MIN_LEVEL:
        restore.record_restore_test(t, v, time.perf_counter() - t0)
    return {**v.as_dict(), "recorded": own}


@click.command()
@click.argument("backup_ids", metavar="[ID]...", nargs=-1)
@click.option("--all-latest", is_flag=True, help="The newest backup of every source (database) in the repository.")
@click.option("--level", type=click.IntRange(1, 4), default=3, show_default=True,
              help="Run levels 1..N, stopping at the first failure: 1 chunks read back, authenticated and hashed; "
                   "2 restored and the engine's checks pass; 3 row counts, checksums and invariants match; "
                   "4 an ERP serves it.")
@click.option("--scratch-database-url", envvar="ERPCTL_SCRATCH_DATABASE_URL", metavar="URL",
              help="PostgreSQL server for the scratch databases of PostgreSQL backups (default: the server of "
                   "--database-url). [env ERPCTL_SCRATCH_DATABASE_URL]")
@repo_options
@target_options
@json_option
def verify(backup_ids, all_latest, level, scratch_database_url, repo, key_file, lock_wait, data_dir, database_url):
    """Prove that backups restore: run the verification ladder up to --level (default 3).

    ID may be a unique prefix or 'latest' (the default when no ID is given: the newest backup of this
    data directory's database, in a repository several databases share). Each level's result and
    duration of this database's own backups is recorded in its evidence log and latest results (not
    those of another database's backups); through --level 3 or 4 it counts as a restore test. Exit 0
    when every backup passed, 28 when one failed (the output names the chunk and the backups that
    need it, the table, or the invariant).
    """
    if backup_ids and all_latest:
        raise click.UsageError("give backup IDs or --all-latest, not both")
    t = target(data_dir, database_url)
    repository = open_repo(t, repo, key_file, lock_wait)
    ids = ladder.select_backups(repository, list(backup_ids), all_latest, source=t.display_url)
    with ladder_progress() as bar:
        out = [_verify_one(repository, backup_id, level, t, scratch_database_url, bar) for backup_id in ids]
    result = {"ok": all(v["ok"] for v in out), "level": level, "repository": repository.url, "backups": out}
    emit(result, render(result))
    if not result["ok"]:
        failed = [v for v in out if not v["ok"]]
        first = failed[0]
        raise VerificationFailed(f"{len(failed)} of {len(out)} backup(s) failed verification; backup "
                                 f"{first['backup'][:8]} at L{first['failed_level']}: {first['failure']}",
                                 fix="Do not restore a backup that failed. For damaged chunks (L1): 'erpctl backup "
                                     "repair' (then 'erpctl backup create' stores them again) and check the "
                                     "store's disks or bucket.")
