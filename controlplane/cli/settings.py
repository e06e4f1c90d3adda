"""erpctl settings: every operator setting of the installation, its value and where it came from."""

from __future__ import annotations

import click

from .. import config
from ..errors import SettingInvalid
from ..installation import SETTINGS, Installation
from .options import emit, json_option

SECRET = ("backup_passphrase", "s3_secret_access_key")


def _row(inst: Installation, name: str) -> dict:
    try:
        got = inst.resolve(name)
    except SettingInvalid as exc:
        return {"value": None, "source": None, "error": exc.detail, "fix": exc.fix}
    value = "(set)" if name in SECRET and got.value else got.value
    if name == "database_url" and value is None:
        value = inst.display_url  # the SQLite database of the data directory
    return {"value": None if value is None else str(value) if not isinstance(value, (int, float)) else value,
            "source": got.source}


def render(r: dict) -> str:
    lines = [f"settings of {r['data_dir']} (flag > environment > running erpctl up > erpctl.toml > default)"]
    for name, row in r["settings"].items():
        shown = f"INVALID: {row['error']}" if row.get("error") else f"{row['value']}  ({row['source']})"
        lines.append(f"{name:<30} {shown}")
    return "\n".join(lines)


@click.command()
@click.option("--data-dir", envvar="ERPCTL_DATA_DIR", metavar="DIR", type=click.Path(file_okay=False, path_type=str),
              help=f"Data directory of the installation. Default: ./{config.DEFAULT_DATA_DIR} [env ERPCTL_DATA_DIR]")
@json_option
def settings(data_dir):
    """Show every setting (backup repository and key, S3, ports, the ERP's URL, probe thresholds...) with
    its value and source; secrets show as (set). Exit 2 when one is invalid (named with its fix)."""
    inst = Installation.open(data_dir)
    rows = {s.name: _row(inst, s.name) for s in SETTINGS}
    emit({"data_dir": str(inst.data_dir), "settings": rows}, render({"data_dir": str(inst.data_dir),
                                                                       "settings": rows}))
    bad = [(n, r) for n, r in rows.items() if r.get("error")]
    if bad:
        raise SettingInvalid(bad[0][1]["error"], fix=bad[0][1]["fix"])
