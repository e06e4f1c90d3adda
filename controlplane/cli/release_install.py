"""erpctl release install WHEEL: install an ERP release (a wheel of this project) into the data directory."""

from __future__ import annotations

from pathlib import Path

import click

from .. import release
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if not r["installed"]:
        return (f"release {r['version']} is already installed from this wheel ({r['path']}): nothing to do")
    stages = ", ".join(f"{m['revision']} {m['stage'] or '?'}" for m in r["migrations"])
    return "\n".join([f"installed release {r['version']} in {r['path']}",
                      f"  wheel    {r['wheel']['file']}  sha256 {r['wheel']['sha256']}",
                      f"  schema   head {r['schema_head']}  (migrations: {stages})",
                      f"  python   {r['python_version']} ({r['python']})",
                      f"Make it current with 'erpctl release current {r['version']}' (that does not migrate), "
                      "or let an upgrade switch to it."])


@click.command(name="install")
@click.argument("wheel", type=click.Path(path_type=Path))
@click.option("--trusted-keys", type=click.Path(path_type=Path),
              help="File or directory of the public keys trusted to sign releases. Default: release_trusted_keys "
                   "(<data dir>/release-keys/). [env ERPCTL_RELEASE_TRUSTED_KEYS]")
@click.option("--allow-unsigned", is_flag=True,
              help="Install even if WHEEL.sig is missing, untrusted or does not match (recorded in the evidence log).")
@target_options
@json_option
def install(wheel, trusted_keys, allow_unsigned, data_dir, database_url):
    """Install the ERP release in WHEEL (erp_controlplane-<version>-py3-none-any.whl) offline, into
    <data dir>/releases/<version>, in its own environment built on erpctl's Python and packages.

    WHEEL.sig, its Ed25519 signature ('erpctl release sign'), is checked against the trusted keys
    before anything of the wheel is opened: an unsigned, untrusted or altered wheel is refused
    (exit 32) unless --allow-unsigned. The same wheel again does nothing; another wheel of an installed version is refused. Nothing
    is listed until the install is complete (an interrupted one is cleaned up by the next).
    """
    result = release.install(target(data_dir, database_url, release_trusted_keys=trusted_keys), wheel,
                             allow_unsigned=allow_unsigned)
    emit(result.as_dict(), render(result.as_dict()))
