"""erpctl backup repair: check every chunk, mark the damaged ones so the next backup stores them
again, and say what the next backup heals and which backups are lost for good."""

from __future__ import annotations

import click

from ..errors import ChunkCorrupt
from .backup_common import open_repo, progress, repo_options
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if not r["damaged"]:
        return f"{r['chunks_checked']} chunk(s) read back, authenticated and hashed: nothing is damaged"
    lines = [f"{len(r['damaged'])} damaged or missing chunk(s) ({r['chunks_checked']} read back); "
             f"{r['chunks_marked']} newly marked (the next 'erpctl backup create' stores them again)"]
    for p in r["damaged"][:20]:
        fate = "the next backup stores it again" if p["heals"] else "LOST: the database no longer holds it"
        lines.append(f"  - chunk {p['chunk'] or '?'} in pack {p['pack'] or '?'}: {p['reason']}; {fate}")
    if len(r["damaged"]) > 20:
        lines.append(f"  ... and {len(r['damaged']) - 20} more (--json lists them all)")
    if r["healed_by_next_backup"]:
        lines.append(f"healed by the next backup: {', '.join(b[:8] for b in r['healed_by_next_backup'])}")
    if r["forgotten"]:
        lines.append(f"forgotten (could not be recovered): {', '.join(b[:8] for b in r['forgotten'])}; "
                     "'erpctl backup prune' frees their packs")
    elif r["unrecoverable"]:
        lines.append(f"cannot be recovered any more: {', '.join(b[:8] for b in r['unrecoverable'])}")
    lines.append("next: 'erpctl backup create', then 'erpctl backup verify --level 1'")
    return "\n".join(lines)


@click.command()
@click.option("--forget-unrecoverable", is_flag=True,
              help="Forget the backups that need a chunk nothing holds any more (recorded in the evidence log).")
@repo_options
@target_options
@json_option
def repair(forget_unrecoverable, repo, key_file, lock_wait, data_dir, database_url):
    """Check every chunk, mark the damaged ones for the next backup; say which backups that heals and which are lost.

    The next 'erpctl backup create' stores a marked chunk again when the live database still holds
    it, which heals every backup that needs it. Reads the live database to say which backups that
    heals and which cannot be recovered any more. Changes nothing on a healthy repository. Exit 0
    when the next backup heals everything, 26 when backups are lost and were not forgotten.
    """
    t = target(data_dir, database_url)
    repository = open_repo(t, repo, key_file, lock_wait)
    with progress() as bar:
        result = repository.repair(t, forget_unrecoverable=forget_unrecoverable, progress=bar).as_dict()
    result["repository"] = repository.url
    emit(result, render(result))
    if not result["ok"]:
        lost = result["unrecoverable"]
        raise ChunkCorrupt(f"{len(lost)} backup(s) need chunks nothing holds any more: {', '.join(lost)}",
                           fix="Keep them for what they still hold, or forget them with 'erpctl backup repair "
                               "--forget-unrecoverable'; then 'erpctl backup create'.")
