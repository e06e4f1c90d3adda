"""erpctl field-key recover: put the field-encryption key back from its escrow copy, once proven."""

from __future__ import annotations

from pathlib import Path

import click

from .. import escrow
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    proof = (f"it decrypts the {r['checked']} encrypted value(s) checked" if r["checked"]
             else "no encrypted value is stored yet to prove it on")
    if r["already"]:
        return f"ok: the escrowed key (fingerprint {r['key_fingerprint']}) is already in place ({proof})"
    lines = [f"recovered: the escrowed key (fingerprint {r['key_fingerprint']}, escrowed {r['escrowed_at']}) "
             f"written to {r['written']}; {proof}"]
    if r["replaced"]:
        lines.append(f"  the key that was there is kept as {r['replaced']}")
    lines.append("  next: 'erpctl restart' so the ERP serves with it")
    return "\n".join(lines)


@click.command()
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The escrow copy. Default: [field_key] escrow_file in erpctl.toml, else "
                   "<data dir>.field-key.escrow beside the data directory. [env ERPCTL_ESCROW_FILE]")
@click.option("--private-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), metavar="PEM",
              help="The RSA private key that opens a copy sealed to its public key (its passphrase, if any: "
                   "env ERPCTL_ESCROW_PRIVATE_KEY_PASSPHRASE). Else the passphrase: env ERPCTL_ESCROW_PASSPHRASE.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the key there instead of the data directory's field.key.")
@click.option("--yes", is_flag=True, help="Replace a different key in place (it is kept, renamed).")
@target_options
@json_option
def recover(source, private_key, out, yes, data_dir, database_url):
    """Recover the field key from its escrow copy, once proven to decrypt the stored fields.

    The key is opened, then proven on the database: it must decrypt the encrypted fields stored there (exit 92
    and nothing written when it does not). Only then is it written to field.key (a different key there is kept
    as field.key.replaced-<time>, with --yes). Recorded in the evidence log (field_key.recover). Restart erpctl
    up afterwards."""
    result = escrow.recover(target(data_dir, database_url), source, private_key=private_key, yes=yes, out=out)
    emit(result, render(result))
