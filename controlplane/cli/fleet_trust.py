"""erpctl fleet trust HOST --fingerprint SHA256:...: record the host's key in the known-hosts file,
only when the key it offers has the fingerprint the operator checked on the host itself."""

from __future__ import annotations

import click
import paramiko

from ..errors import HostKeyRefused, HostUnreachable
from ..evidence import EvidenceLog
from ..remote import fleet, hostkeys
from .fleet_common import fleet_options, installation
from .options import emit, json_option, target_options


@click.command(name="trust")
@target_options
@fleet_options
@json_option
@click.argument("host")
@click.option("--fingerprint", required=True, metavar="SHA256:...",
              help="The key's fingerprint as checked on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).")
def trust(data_dir, database_url, limit, host, fingerprint, **fleet_opts):
    """Record HOST's key in the known-hosts file when it matches --fingerprint (a changed key replaced)."""
    inst = installation(data_dir, database_url, **fleet_opts)
    h = fleet.host(inst, host)
    known_hosts = inst.get("fleet_known_hosts")
    try:
        key = hostkeys.offered_key(h.address, h.port, inst.get("fleet_connect_timeout"))
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise HostUnreachable(f"host {h.name} ({h.address}:{h.port}) did not complete the SSH handshake: {exc}",
                              fix="Check that the host is up and sshd listens there.") from None
    offered = hostkeys.fingerprint(key)
    if offered != fingerprint.strip():
        raise HostKeyRefused(f"host {h.name} offered {key.get_name()} key {offered}, not {fingerprint}: not recorded",
                             fix="Check the fingerprint on the host itself; a mismatch may mean someone is in the "
                                 "middle.")
    name = hostkeys.known_name(h.address, h.port)
    replaced = hostkeys.record(known_hosts, name, key)
    EvidenceLog(inst.data_dir).append("fleet_trust", {"host": h.name, "name": name, "key_type": key.get_name(),
                                                      "fingerprint": offered, "replaced": replaced})
    result = {"host": h.name, "name": name, "key_type": key.get_name(), "fingerprint": offered,
              "replaced": replaced, "known_hosts": str(known_hosts)}
    emit(result, f"recorded {h.name} ({name}) {key.get_name()} {offered} in {known_hosts}"
                 + (f" (replacing {replaced})" if replaced else ""))
