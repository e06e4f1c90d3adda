"""erpctl backup prune: forget backups a retention policy does not keep, and free their space."""

from __future__ import annotations

import click

from ..backup.retention import RetentionPolicy, configured
from ..errors import SettingInvalid
from .backup_common import human_bytes, installation, open_repo, progress, repo_options
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    head = "would forget" if r["dry_run"] else "forgot"
    rules = ", ".join(f"{k} {v}" for k, v in r["policy"].items() if v)
    lines = [f"policy ({r['policy_source']}): {rules}",
             f"kept {len(r['kept'])} backup(s), {head} {len(r['forgotten'])}"]
    lines += [f"  keep   {b[:8]}  ({', '.join(r['reasons'][b])})" for b in r["kept"]]
    lines += [f"  forget {b[:8]}" for b in r["forgotten"]]
    lines.append(f"{'would delete' if r['dry_run'] else 'deleted'} {r['packs_deleted']} pack(s), repacked "
                 f"{r['packs_repacked']}, freeing {human_bytes(r['bytes_freed'])}")
    if r["note"]:
        lines.append(f"note: {r['note']}")
    return "\n".join(lines)


@click.command()
@click.option("--keep-last", type=click.IntRange(0), default=0, help="Keep the N newest backups.")
@click.option("--keep-daily", type=click.IntRange(0), default=0, help="Keep the newest backup of N days.")
@click.option("--keep-weekly", type=click.IntRange(0), default=0, help="Keep the newest backup of N ISO weeks.")
@click.option("--keep-monthly", type=click.IntRange(0), default=0, help="Keep the newest backup of N months.")
@click.option("--dry-run", is_flag=True, help="Say what would be forgotten and freed; change nothing.")
@repo_options
@target_options
@json_option
def prune(keep_last, keep_daily, keep_weekly, keep_monthly, dry_run, repo, key_file, lock_wait, data_dir,
          database_url):
    """Apply a retention policy: forget the other backups, delete the packs no kept backup needs.

    The policy is the --keep-* options given, else the installation's [backup.retention] of
    erpctl.toml (what the scheduled backup.prune applies); with neither it refuses (exit 2).
    Never deletes a chunk a kept backup needs. While a backup runs, only forgets (the packs are
    deleted by the next prune). Appends to the evidence log.
    """
    t = target(data_dir, database_url)
    policy, source = _policy(t, repo, RetentionPolicy(keep_last, keep_daily, keep_weekly, keep_monthly))
    repository = open_repo(t, repo, key_file, lock_wait)
    with progress() as bar:
        result = repository.prune(policy, dry_run=dry_run, data_dir=t.data_dir, progress=bar).as_dict()
    result.update(repository=repository.url, policy=policy.as_dict(), policy_source=source)
    emit(result, render(result))


def _policy(t, repo, given: RetentionPolicy) -> tuple[RetentionPolicy, str]:
    """The --keep-* options when any is given, else the installation's [backup.retention]."""
    if not given.empty():
        return given, "options"
    policy = configured(installation(t, repo, None))
    if policy is None:
        raise SettingInvalid("no retention policy: no --keep-* option was given and erpctl.toml has no "
                             "[backup.retention] (pruning with neither would keep no backup)",
                             fix="Give the backups to keep (erpctl backup prune --keep-daily 7 --keep-weekly 4), "
                                 "or set [backup.retention] in erpctl.toml (keep_daily = 7, ...); add --dry-run "
                                 "to see what it would forget first.")
    return policy, "erpctl.toml [backup.retention]"
