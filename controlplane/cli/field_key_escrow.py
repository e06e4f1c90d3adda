"""erpctl field-key escrow: write the escrow copy of the field-encryption key."""

from __future__ import annotations

from pathlib import Path

import click

from .. import config, escrow
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    lines = [f"escrowed: the field key (fingerprint {r['key_fingerprint']}) sealed with {', '.join(r['methods'])} "
             f"in {r['file']}"]
    if r["inside_data_dir"]:
        lines.append("  warning: the copy is inside the data directory; keep one elsewhere too")
    return "\n".join(lines)


@click.command("escrow")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Where to write the copy. Default: [field_key] escrow_file in erpctl.toml, else "
                   "<data dir>.field-key.escrow beside the data directory. [env ERPCTL_ESCROW_FILE]")
@target_options
@json_option
def escrow_(out, data_dir, database_url):
    """Write the escrow copy of the field key, sealed with a passphrase and/or to an RSA public key.

    The key is sealed with ERPCTL_ESCROW_PASSPHRASE (scrypt, AES-256-GCM) and/or to an RSA public key
    (ERPCTL_ESCROW_PUBLIC_KEY, [field_key] escrow_public_key), with its fingerprint. A copy sealed with the
    passphrase is opened again before it is written. Recorded in the evidence log (field_key.escrow). Exit 90
    when no escrow secret is set."""
    inst = target(data_dir, database_url)
    result = escrow.escrow(inst, config.field_key(inst, create=False), out)
    emit(result, render(result))
