"""erpctl pitr verify: restore the newest backup and the whole WAL archive into a scratch cluster and
run the verification ladder on it: proof that the repository restores."""

from __future__ import annotations

import click

from ..backup.verify import default_field_key
from ..pitr import restore as pitr_restore
from .options import emit, json_option, target_options
from .pitr_common import open_pitr
from .pitr_restore import level_option, render


@click.command(name="verify")
@target_options
@level_option
@json_option
def verify(data_dir, database_url, level):
    """Prove the repository restores: newest backup + archived WAL into a scratch cluster, then the ladder."""
    inst, cfg = open_pitr(data_dir, database_url)
    out = pitr_restore.restore(inst.data_dir, cfg, level=level, field_key=default_field_key(inst))
    emit(out, render(out))
