"""erpctl release sign WHEEL --key KEY: write WHEEL.sig, the wheel's Ed25519 signature."""

from __future__ import annotations

from pathlib import Path

import click

from ..release import signing
from .options import emit, json_option


@click.command(name="sign")
@click.argument("wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="ERPCTL_RELEASE_SIGNING_KEY", help="The private signing key ('erpctl release keygen'). "
                                                         "[env ERPCTL_RELEASE_SIGNING_KEY]")
@json_option
def sign(wheel, key_file):
    """Sign the release WHEEL where releases are built: write WHEEL.sig (Ed25519 over its name and
    sha256), which 'erpctl release install' checks against the installation's trusted keys."""
    r = signing.sign(wheel, key_file)
    emit(r, f"signed {r['wheel']} with key {r['key_id']}: {r['signature']}")
