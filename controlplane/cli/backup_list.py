"""erpctl backup list: the backups in the repository, oldest first."""

from __future__ import annotations

import click

from .backup_common import human_bytes, open_repo, repo_options
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if not r["backups"]:
        return f"no backups in {r['repository']}"
    lines = [f"{'id':<10}{'created (UTC)':<34}{'engine':<12}{'size':>11}{'added':>11}  schema  invariants"]
    for b in r["backups"]:
        if b["invariants_ok"] is None:
            inv = "not checked"
        else:
            inv = "clean" if b["invariants_ok"] else f"{len(b['invariants'])} violation(s)"
        lines.append(f"{b['id'][:8]:<10}{b['created_at']:<34}{b['engine']:<12}{human_bytes(b['size_bytes']):>11}"
                     f"{human_bytes(b['bytes_added']):>11}  {b['schema_revision'] or '-':<7} {inv}")
    lines.append(f"{len(r['backups'])} backup(s) in {r['repository']}")
    return "\n".join(lines)


@click.command(name="list")
@repo_options
@target_options
@json_option
def list_(repo, key_file, lock_wait, data_dir, database_url):
    """List the backups (id, time, engine, size, bytes added, schema revision, invariants)."""
    t = target(data_dir, database_url)
    repository = open_repo(t, repo, key_file, lock_wait)
    backups = [m.summary() for m in repository.list_manifests()]
    for b in backups:
        b.pop("tables")
    emit({"repository": repository.url, "backups": backups}, render({"repository": repository.url,
                                                                      "backups": backups}))
