"""erpctl backup create: take a consistent backup of the ERP database while it keeps running."""

from __future__ import annotations

import click

from .backup_common import human_bytes, open_for_backup, progress, repo_options
from .options import emit, json_option, target, target_options


def render(m: dict) -> str:
    lines = [f"backup {m['id'][:8]} of {m['source']} ({m['engine']}, schema {m['schema_revision']})",
             f"  size {human_bytes(m['size_bytes'])} in {m['chunk_count']} chunks, added "
             f"{human_bytes(m['bytes_added'])} to the repository, in {m['duration_seconds']} s",
             f"  {len(m['tables'])} tables, {m['total_rows']} rows"]
    if m["invariants"] is None:
        lines.append("  invariants not checked at capture ('erpctl backup verify' checks them on the restored copy)")
    elif m["invariants"]:
        lines.append(f"  warning: {len(m['invariants'])} invariant violation(s) at capture time "
                     f"(see 'erpctl backup show {m['id'][:8]}')")
    else:
        lines.append("  invariants clean at capture time")
    return "\n".join(lines)


@click.command()
@click.option("--check-invariants", is_flag=True,
              help="Also run the ERP's invariants on the snapshot and record what they find in the manifest "
                   "(verification L3 always runs them on the restored copy).")
@repo_options
@target_options
@json_option
def create(check_invariants, repo, key_file, lock_wait, data_dir, database_url):
    """Back up the ERP database into the repository.

    SQLite through its online backup API, PostgreSQL through pg_dump of an exported snapshot, so the
    ERP keeps serving writes. Stores only new chunks, writes the manifest last; a killed run leaves no
    manifest and the next run reuses what it uploaded. Appends to the evidence log.
    """
    t = target(data_dir, database_url)
    repository = open_for_backup(t, repo, key_file, lock_wait)
    with progress() as bar:
        manifest = repository.create_backup(t, progress=bar, check_invariants=check_invariants)
    result = {**manifest.summary(), "repository": repository.url}
    emit(result, render(result))
