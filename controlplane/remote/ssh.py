"""SSH to one host with paramiko: key-based login only, strict host-key checking against the fleet's
known-hosts file, a connect/login timeout and a command timeout."""

from __future__ import annotations

import hashlib
import logging
import select
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ..errors import FleetError, HostKeyRefused, HostUnreachable
from . import hostkeys
from .inventory import Host

logging.getLogger("paramiko").setLevel(logging.WARNING)  # its per-connection chatter is not the operator's news
OUTPUT_KEPT = 64 * 1024   # bytes of each stream kept for display (the digest covers all of it)


class Stream:
    """One output stream: its sha256 and size over all of it, its last OUTPUT_KEPT bytes for display."""

    def __init__(self):
        self.digest, self.size, self.tail = hashlib.sha256(), 0, bytearray()

    def add(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        self.tail += data
        del self.tail[:-OUTPUT_KEPT]

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace")


@dataclass
class Output:
    exit_code: int | None
    stdout: Stream
    stderr: Stream
    timed_out: bool = False


@dataclass(frozen=True)
class Access:
    """How erpctl logs in to the fleet's hosts."""

    known_hosts: Path
    identity_file: Path | None
    connect_timeout: float
    command_timeout: float


def connect(host: Host, access: Access) -> paramiko.SSHClient:
    """A logged-in client, or HostKeyRefused / HostUnreachable / FleetError (no key to log in with)."""
    key_file = host.key_file or (str(access.identity_file) if access.identity_file else None)
    if not key_file:
        raise FleetError(f"host {host.name}: no private key to log in with (key-based login only)",
                         fix="Set ansible_ssh_private_key_file in the inventory, or --identity / [fleet] identity_file.")
    client = paramiko.SSHClient()
    client.get_host_keys().update(hostkeys.load(access.known_hosts))
    client.set_missing_host_key_policy(hostkeys.RefuseUnknown(host.name, access.known_hosts))
    t = access.connect_timeout
    try:
        client.connect(host.address, port=host.port, username=host.user, key_filename=key_file,
                       look_for_keys=False, allow_agent=False, timeout=t, banner_timeout=t, auth_timeout=t)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise hostkeys.refused(host.name, hostkeys.known_name(host.address, host.port), exc.key,
                               access.known_hosts, exc.expected_key) from None
    except HostKeyRefused:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        raise _unreachable(host, f"refused the login with {key_file} ({exc})", "auth-failed") from None
    except (OSError, paramiko.SSHException, EOFError) as exc:
        client.close()
        raise _unreachable(host, f"did not answer within {t:g} s ({exc.__class__.__name__}: {exc})"
                           if isinstance(exc, socket.timeout) else f"{exc.__class__.__name__}: {exc}") from None
    return client


def _unreachable(host: Host, why: str, outcome: str = "unreachable") -> HostUnreachable:
    exc = HostUnreachable(f"host {host.name} ({host.address}:{host.port}) {why}",
                          fix="Check that the host is up and sshd listens there, and the inventory's address/port/user.")
    exc.outcome = outcome
    return exc


def in_root(host: Host, command: str) -> str:
    """The command run in the host's erp_root (as its HOME too), when the inventory sets one."""
    if not host.root:
        return command
    root = shlex.quote(host.root)
    return f"cd {root} && HOME={root} exec /bin/sh -c {shlex.quote(command)}"


def run(client: paramiko.SSHClient, command: str, timeout: float) -> Output:
    """Run `command`; both streams read as they come (neither can stall the other); past `timeout`
    the channel is closed and the output so far returned with timed_out."""
    chan = client.get_transport().open_session()
    chan.settimeout(timeout)
    chan.exec_command(command)
    out, err = Stream(), Stream()
    deadline = time.monotonic() + timeout
    while True:
        while chan.recv_ready():
            out.add(chan.recv(65536))
        while chan.recv_stderr_ready():
            err.add(chan.recv_stderr(65536))
        # sshd sends the exit status as the command ends, maybe before the output still waiting for window
        # space: done only at the end of the output (EOF) too
        if (chan.exit_status_ready() and chan.eof_received and not chan.recv_ready()
                and not chan.recv_stderr_ready()):
            break
        left = deadline - time.monotonic()
        if left <= 0:
            chan.close()
            return Output(None, out, err, timed_out=True)
        select.select([chan], [], [], min(left, 0.2))
    code = chan.recv_exit_status()
    chan.close()
    return Output(code, out, err)
