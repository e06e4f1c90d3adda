"""erpctl drill abort: stop the running drill at once; its clean-up runs."""

from __future__ import annotations

import click

from .options import emit, json_option, target, target_options


@click.command()
@target_options
@json_option
def abort(data_dir, database_url):
    """Stop the running drill of this data directory at once (SIGTERM: it runs its clean-up; SIGKILL and the
    clean-up here when it does not end in time). A drill whose process is gone is cleaned up. Exit 0."""
    from ..drills import state as states

    inst = target(data_dir, database_url)
    out = states.abort(inst.data_dir)
    emit(out, f"drill {out['aborted']}: {out['said']}" if out["aborted"] else out["said"])
