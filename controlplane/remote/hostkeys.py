"""Host keys: the fleet's known-hosts file (OpenSSH's format), checked strictly. A key that is not in
it (unknown) or differs from the one recorded (changed) is refused, naming the host and the offered
key's SHA256 fingerprint; `erpctl fleet trust HOST --fingerprint SHA256:...` records a key only when
the operator gives the fingerprint they checked out of band, and it matches."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import paramiko

from ..errors import HostKeyRefused
from ..fsutil import atomic_write_text


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (as `ssh-keygen -lf` prints it)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_name(address: str, port: int) -> str:
    """The host's name in a known-hosts file: `addr`, or `[addr]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def load(path: Path) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    if Path(path).exists():
        keys.load(str(path))
    return keys


def refused(host: str, name: str, offered: paramiko.PKey, known_hosts: Path, expected=None) -> HostKeyRefused:
    """The error for a key not recorded (expected None) or different from the recorded one."""
    fp = fingerprint(offered)
    if expected is None:
        what = f"host {host} ({name}) offered an unknown {offered.get_name()} key {fp}: not in {known_hosts}"
        fix = (f"Check the key's fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub); "
               f"if it is {fp}, run: erpctl fleet trust {host} --fingerprint {fp}")
    else:
        what = (f"host {host} ({name}) offered a CHANGED {offered.get_name()} key {fp}; {known_hosts} records "
                f"{fingerprint(expected)}. The host was reinstalled or someone is in the middle")
        fix = (f"Do not connect until you know why. If the host's new key really is {fp} (checked on the host), "
               f"run: erpctl fleet trust {host} --fingerprint {fp}")
    exc = HostKeyRefused(what, fix=fix)
    exc.fingerprint = fp
    exc.changed = expected is not None
    return exc


class RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """paramiko's policy for a key not in the known-hosts file: refuse, with its fingerprint."""

    def __init__(self, host: str, known_hosts: Path):
        self.host, self.known_hosts = host, known_hosts

    def missing_host_key(self, client, hostname, key):
        raise refused(self.host, hostname, key, self.known_hosts)


def offered_key(address: str, port: int, timeout: float) -> paramiko.PKey:
    """The host key a server offers (the SSH handshake only: no login)."""
    transport = paramiko.Transport((address, port))
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def record(known_hosts: Path, name: str, key: paramiko.PKey) -> str | None:
    """Record `key` for `name`, replacing what was recorded for it; returns the fingerprint it replaced."""
    known_hosts = Path(known_hosts)
    lines = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    kept, replaced = [], None
    for line in lines:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line) if line.strip() and not line.startswith("#") \
            else None
        if entry is not None and name in entry.hostnames and entry.key.get_name() == key.get_name():
            replaced = fingerprint(entry.key)
            continue
        kept.append(line)
    kept.append(f"{name} {key.get_name()} {key.get_base64()}")
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(known_hosts, "\n".join(kept) + "\n")
    return replaced
