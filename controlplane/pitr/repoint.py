"""Point the app hosts at a new database: `[database] url` in each host's erpctl.toml (erp_root), on this
machine for hosts with `ansible_connection: local`, over SSH (the fleet's strict host keys and key login)
for the others. The rest of each file is kept as the operator wrote it."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path

from sqlalchemy.engine import make_url

from .. import layout
from ..fsutil import atomic_write_text
from ..remote import ssh
from ..remote.inventory import Host

SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*(#.*)?$")
URL_LINE = re.compile(r"^\s*url\s*=")


def with_url(text: str, url: str) -> str:
    """erpctl.toml's text with [database] url set to `url` (the section added when missing)."""
    lines = text.splitlines()
    value = f'url = "{url}"'
    section = None
    for i, line in enumerate(lines):
        m = SECTION.match(line)
        if m:
            if section == "database":  # [database] had no url: add it at its end
                lines.insert(i, value)
                return "\n".join(lines) + "\n"
            section = m.group(1).strip()
        elif section == "database" and URL_LINE.match(line):
            lines[i] = value
            return "\n".join(lines) + "\n"
    if section == "database":
        lines.append(value)
    else:
        lines += ["", "[database]", value]
    return "\n".join(lines).lstrip("\n") + "\n"


def current_url(text: str) -> str | None:
    try:
        return (tomllib.loads(text).get("database") or {}).get("url")
    except tomllib.TOMLDecodeError:
        return None


def new_url(old: str | None, address: str, port: int, user: str, database: str) -> str:
    """The app's URL with the new primary's host and port (its driver, user, password, database kept)."""
    if old and old.startswith("postgres"):
        return make_url(old).set(host=address, port=port).render_as_string(hide_password=False)
    return f"postgresql://{user}@{address}:{port}/{database}"


def _masked(url: str | None) -> str | None:
    return make_url(url).render_as_string(hide_password=True) if url else None


def repoint(host: Host, address: str, port: int, user: str, database: str, access: ssh.Access | None) -> dict:
    """Rewrite one app host's database URL; its result (never raises)."""
    result = {"host": host.name, "root": host.root}
    if not host.root:
        return {**result, "outcome": "failed", "error": "the host has no erp_root in the inventory"}
    try:
        if host.vars.get("ansible_connection") == "local":
            old, new = _local(Path(host.root) / layout.name("config"), address, port, user, database)
        else:
            old, new = _remote(host, access, address, port, user, database)
    except Exception as exc:  # noqa: BLE001 - one host's failure is its result, never another's
        return {**result, "outcome": "failed", "error": f"{exc.__class__.__name__}: {exc}"}
    return {**result, "outcome": "repointed", "old_url": _masked(old), "new_url": _masked(new)}


def _local(path: Path, address: str, port: int, user: str, database: str) -> tuple[str | None, str]:
    text = path.read_text() if path.exists() else ""
    old = current_url(text)
    new = new_url(old, address, port, user, database)
    atomic_write_text(path, with_url(text, new))
    os.chmod(path, 0o600)  # it may hold the database password
    return old, new


def _remote(host: Host, access, address: str, port: int, user: str, database: str) -> tuple[str | None, str]:
    """Over SSH with plain commands (no SFTP subsystem needed): read the file, write a new one beside
    it (mode 0600) and rename it over the old one."""
    client = ssh.connect(host, access)
    try:
        path = shlex.quote(f"{host.root.rstrip('/')}/{layout.name('config')}")
        read = ssh.run(client, f"cat {path} 2>/dev/null || true", access.command_timeout)
        if read.stdout.size > ssh.OUTPUT_KEPT or read.exit_code != 0:
            raise OSError(f"could not read {path} whole ({read.stdout.size} bytes, exit {read.exit_code})")
        text = read.stdout.text()
        old = current_url(text)
        new = new_url(old, address, port, user, database)
        stdin, stdout, stderr = client.exec_command(f"umask 077 && cat > {path}.tmp && mv {path}.tmp {path}",
                                                    timeout=access.command_timeout)
        stdin.write(with_url(text, new))
        stdin.channel.shutdown_write()
        if (code := stdout.channel.recv_exit_status()) != 0:
            raise OSError(f"writing {path} exited {code}: {stderr.read().decode(errors='replace').strip()}")
        return old, new
    finally:
        client.close()
