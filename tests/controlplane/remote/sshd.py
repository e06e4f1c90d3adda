"""Real sshd instances for the fleet tests: each its own host key, config, port on 127.0.0.1 and pid
file; the test user logs in with a test key. Each inventory "host" gets its own directory as its
filesystem root (erp_root), by convention."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import yaml

from ..cli_helpers import free_ports, need

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)


def keygen(path: Path, comment: str) -> Path:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL)
    return path


def fingerprint(pub: Path) -> str:
    """The fingerprint ssh-keygen prints for a public key: what an operator checks on the host."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


class Sshd:
    """One sshd: `start()`, `stop()`, `rekey()` (a new host key, as a reinstalled host has)."""

    def __init__(self, directory: Path, port: int, client_pub: Path):
        self.dir, self.port, self.proc = directory, port, None
        directory.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(directory / "ssh_host_ed25519_key", f"host-{port}")
        self.config = directory / "sshd_config"
        self.config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\nPidFile {directory / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {client_pub}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
            "MaxStartups 50\nLogLevel ERROR\n")

    @property
    def fingerprint(self) -> str:
        return fingerprint(Path(f"{self.host_key}.pub"))

    def start(self) -> "Sshd":
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege-separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {(self.dir / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd on port {self.port} did not answer")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def rekey(self) -> None:
        self.stop()
        keygen(self.host_key, f"host-{self.port}-new")
        self.start()


def start_hosts(tmp: Path, count: int) -> tuple[list[Sshd], Path]:
    """`count` running sshd and the client key that logs in to them."""
    if SSHD is None or shutil.which("ssh-keygen") is None:
        need("sshd and ssh-keygen are not installed (Debian: openssh-server)")
    client = keygen(tmp / "client_ed25519", "erpctl-test")
    servers = [Sshd(tmp / f"sshd{i}", port, Path(f"{client}.pub")).start()
               for i, port in enumerate(free_ports(count))]
    return servers, client


def write_inventory(path: Path, hosts: dict[str, tuple[str, Sshd]], client: Path, roots: Path) -> Path:
    """An Ansible YAML inventory: hosts by role, each with its own erp_root under `roots`."""
    groups: dict = {}
    for name, (role, server) in hosts.items():
        root = roots / name
        root.mkdir(parents=True, exist_ok=True)
        groups.setdefault(role, {"hosts": {}})["hosts"][name] = {
            "ansible_host": "127.0.0.1", "ansible_port": server.port, "erp_root": str(root)}
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"all": {"vars": {"ansible_user": user,
                                                     "ansible_ssh_private_key_file": str(client)},
                                            "children": groups}}, sort_keys=False))
    return path
