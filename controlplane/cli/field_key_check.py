"""erpctl field-key check: does the field key in use decrypt the stored fields; is it escrowed."""

from __future__ import annotations

import click

from .. import escrow
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    proof = (f"decrypts the {r['checked']} encrypted value(s) checked" if r["checked"]
             else "no encrypted value is stored yet")
    escrowed = {True: f"escrowed in {r['escrow_file']}", False: f"NOT the key escrowed in {r['escrow_file']}",
                None: f"no escrow copy at {r['escrow_file']}"}[r["escrowed"]]
    return f"ok: the field key ({r['source']}, fingerprint {r['key_fingerprint']}) {proof}; {escrowed}"


@click.command()
@target_options
@json_option
def check(data_dir, database_url):
    """Check that the field key in use decrypts the stored encrypted fields and that its escrow copy holds it.

    The key in use is ERP_FIELD_KEY, else field.key. Exit 92 when it does not decrypt them (the key was lost or
    replaced), 14 when there is none. Changes nothing."""
    result = escrow.current(target(data_dir, database_url))
    emit(result, render(result))
