"""erpctl release keygen KEY: a new release signing key (KEY, mode 0600) and its public key (KEY.pub)."""

from __future__ import annotations

from pathlib import Path

import click

from ..release import signing
from .options import emit, json_option


@click.command(name="keygen")
@click.argument("key", type=click.Path(exists=False, dir_okay=False, path_type=Path))
@json_option
def keygen(key):
    """Make a release signing key: KEY (private, mode 0600, never overwritten; keep it where releases
    are built) and KEY.pub (public: copy it into each installation's trusted keys, <data
    dir>/release-keys/ by default)."""
    if key.exists():
        raise click.UsageError(f"{key} exists already; choose another name (a key is never overwritten)")
    r = signing.generate_key(key)
    emit(r, f"signing key {r['key']} (id {r['key_id']}); trust it with: cp {r['public_key']} <data dir>/release-keys/")
