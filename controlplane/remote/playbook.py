"""Ansible playbooks run on the fleet with ansible-playbook, as operators run them: the installation's
inventory, its known-hosts file strictly (StrictHostKeyChecking=yes), key-based login only, the
connect timeout and the bound on parallelism (forks); each run's recap per host (ok, changed,
unreachable, failed) in the evidence log."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .. import layout
from ..errors import FleetError, HostKeyRefused, HostUnreachable, RemoteCommandFailed
from ..evidence import EvidenceLog
from ..installation import Installation

RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<counts>(?:\w+=\d+\s*)+)$")
# What a play reports back to erpctl: a debug task's msg "ERPCTL_REPORT <json object>" (json result format).
REPORT = re.compile(r'^\s*"msg": "ERPCTL_REPORT (?P<json>.*)",?$', re.M)
HOST_KEY_FAILED = re.compile(r"fatal: \[(?P<host>[^\]]+)\]: UNREACHABLE!.*Host key verification failed")


def ssh_args(known_hosts: Path) -> str:
    """ssh's options for Ansible: this known-hosts file only, strictly; keys only, no prompts."""
    return " ".join(["-o StrictHostKeyChecking=yes", f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))}",
                     "-o GlobalKnownHostsFile=/dev/null", "-o UpdateHostKeys=no", "-o IdentitiesOnly=yes",
                     "-o PasswordAuthentication=no", "-o BatchMode=yes"])


def secret_vars(inst: Installation, also: Path | None = None) -> list[Path]:
    """The files of rotated secrets every play gets as extra variables (over the inventory's values): the
    fleet's rotated secrets (fleet/secrets.yml) when there are any, then `also` (a rotation's new ones)."""
    rotated = layout.path(inst.data_dir, "fleet_secrets")
    return [p for p in (rotated, also) if p is not None and p.is_file()]


def command(inst: Installation, playbook: str, *, check: bool, limit: str | None,
            extra_vars: dict | None = None, secrets_file: Path | None = None) -> tuple[list[str], dict, Path]:
    """The ansible-playbook command line, its environment and its working directory."""
    binary = shutil.which("ansible-playbook")
    if binary is None:
        raise FleetError("ansible-playbook is not installed", fix="Install ansible-core (Debian: apt install ansible-core).")
    project = inst.get("fleet_playbooks_dir")
    book = project / playbook
    if not book.is_file():
        raise FleetError(f"no playbook {playbook} in {project}", fix="Name one of the project's playbooks (site.yml, "
                                                                     "check.yml).")
    argv = [binary, "-i", str(inst.get("fleet_inventory")), str(book), "--forks", str(inst.get("fleet_parallel"))]
    argv += ["--check", "--diff"] if check else []
    argv += ["--limit", limit] if limit else []
    argv += ["--extra-vars", json.dumps(extra_vars)] if extra_vars else []
    argv += [f"--extra-vars=@{p}" for p in secret_vars(inst, secrets_file)]
    env = {**os.environ, "ANSIBLE_CONFIG": str(project / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_SSH_ARGS": ssh_args(inst.get("fleet_known_hosts")),
           "ANSIBLE_TIMEOUT": str(int(max(1, inst.get("fleet_connect_timeout")))),
           "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "PYTHONUNBUFFERED": "1"}
    if (identity := inst.get("fleet_identity_file")) is not None:
        env["ANSIBLE_PRIVATE_KEY_FILE"] = str(identity)
    return argv, env, project


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: {host: {ok, changed, unreachable, failed, skipped, rescued, ignored}}."""
    hosts, inside = {}, False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            inside = True
            continue
        m = RECAP.match(line.strip()) if inside else None
        if m:
            hosts[m["host"]] = {k: int(v) for k, v in (kv.split("=") for kv in m["counts"].split())}
    return hosts


def reported(output: str) -> dict:
    """What the play reported back (its ERPCTL_REPORT debug messages), merged in order."""
    out = {}
    for m in REPORT.finditer(output):
        try:
            out.update(json.loads(json.loads(f'"{m["json"]}"')))
        except (ValueError, TypeError):
            continue
    return out


def run(inst: Installation, playbook: str, *, check: bool = False, limit: str | None = None,
        echo: bool = True, extra_vars: dict | None = None, kind: str = "fleet_playbook",
        secrets_file: Path | None = None) -> dict:
    """Run `playbook` on the fleet; its output streamed to stderr (progress per host), its result, recorded
    in the evidence log as `kind` (with the extra variables: never secrets, those live in the inventory)."""
    argv, env, project = command(inst, playbook, check=check, limit=limit, extra_vars=extra_vars,
                                 secrets_file=secrets_file)
    t0 = time.monotonic()
    lines = []
    with subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(line)
    output = "".join(lines)
    refused = sorted({m["host"] for m in HOST_KEY_FAILED.finditer(output)})
    result = {"playbook": playbook, "check": check, "limit": limit, "returncode": proc.returncode,
              "extra_vars": extra_vars or {}, "seconds": round(time.monotonic() - t0, 2),
              "hosts": recap(output), "host_key_refused": refused, "reported": reported(output),
              "output_sha256": hashlib.sha256(output.encode()).hexdigest()}
    result["changed"] = sum(h.get("changed", 0) for h in result["hosts"].values())
    result["rescued"] = sum(h.get("rescued", 0) for h in result["hosts"].values())
    EvidenceLog(inst.data_dir).append(kind, result, outcome="ok" if proc.returncode == 0 else "failed")
    result["output"] = output[-20000:]
    return result


def failure(result: dict) -> FleetError | None:
    """The error for a playbook run (None when it succeeded): host keys first, then unreachable hosts."""
    code, hosts = result["returncode"], result["hosts"]
    if code == 0:
        return None
    if result["host_key_refused"]:
        return HostKeyRefused(f"ansible-playbook {result['playbook']}: host key verification failed for "
                              f"{', '.join(result['host_key_refused'])} (unknown or changed key): not connected",
                              fix="'erpctl fleet ssh-check' shows the offered key's fingerprint; check it on the host, "
                                  "then 'erpctl fleet trust HOST --fingerprint SHA256:...'.")
    down = sorted(h for h, c in hosts.items() if c.get("unreachable"))
    failed = sorted(h for h, c in hosts.items() if c.get("failed"))
    if down:
        return HostUnreachable(f"ansible-playbook {result['playbook']}: unreachable: {', '.join(down)}",
                               fix="'erpctl fleet ssh-check' says why each host cannot be reached.")
    if failed:
        return RemoteCommandFailed(f"ansible-playbook {result['playbook']}: tasks failed on {', '.join(failed)}",
                                   fix="The play's output above names the failed task and its message.")
    return FleetError(f"ansible-playbook {result['playbook']} exited {code}",
                      fix="The play's output above says why (a syntax error, an undefined variable...).")
