"""erpctl evidence public-key: the public key that checks this installation's evidence records."""

from __future__ import annotations

from pathlib import Path

import click

from .. import evidence_keys
from ..evidence import EvidenceLog
from ..fsutil import atomic_write_text
from .options import emit, json_option, target, target_options


@click.command(name="public-key")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the key (PEM) to FILE instead of printing it.")
@target_options
@json_option
def public_key(out, data_dir, database_url):
    """Print (or write to FILE) the public key of this installation's evidence signing key, for auditors.
    'erpctl evidence verify --public-key FILE' then trusts only it. Makes the key if there is none yet.

    Exit 18 when the private key file is readable by others.
    """
    log = EvidenceLog(target(data_dir, database_url).data_dir)
    signer = log.signer()
    pem = evidence_keys.public_pem(signer.public).decode()
    if out is not None:
        atomic_write_text(out, pem)
    result = {"key_id": signer.key_id, "public_key": pem, "private_key_file": str(signer.path),
              "out": str(out) if out is not None else None}
    emit(result, f"key {signer.key_id} written to {out}" if out is not None else pem.rstrip("\n"))
