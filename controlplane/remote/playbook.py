"""Ansible playbooks run on the fleet with ansible-playbook, as operators run them: the installation's
inventory, its known-hosts file strictly (StrictHostKeyChecking=yes), key-based login only, the
connect timeout and the bound on parallelism (forks); each run's recap per host (ok, changed,
unreachable, failed) in the evidence log.

ssh keeps one master connection per host for the run (ControlMaster; its socket in the installation's
fleet/ssh/, named by Ansible): a play's tasks reuse it instead of logging in for each task. The last run to
end closes the masters (`ssh -O exit`), so the next run logs in afresh and checks each host's key again: a
changed key is refused even right after a run."""

from __future__ import annotations

import contextlib
import fcntl
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
from . import fleet

RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<counts>(?:\w+=\d+\s*)+)$")
# What a play reports back to erpctl: a debug task's msg "ERPCTL_REPORT <json object>" (json result format).
REPORT = re.compile(r'^\s*"msg": "ERPCTL_REPORT (?P<json>.*)",?$', re.M)
HOST_KEY_FAILED = re.compile(r"fatal: \[(?P<host>[^\]]+)\]: UNREACHABLE!.*Host key verification failed")
# ssh ended while Ansible was sending it the module (pipelining): Ansible reports no reason, not even a refused key
UNSENT = re.compile(r"fatal: \[(?P<host>[^\]]+)\]: UNREACHABLE!.*Data could not be sent to remote host")


CONTROL_PERSIST = "60s"
# Ansible names each master's socket <directory>/<10 hex digits>; ssh binds it as "<path>.<16 random
# characters>" first, and a Unix socket's path is at most 107 bytes.
CONTROL_PATH_MAX = 107 - 17 - 11


def control_dir(inst: Installation) -> Path | None:
    """The directory of the run's master connections (None when the data directory's path is too long for
    a Unix socket in it: then each task logs in on its own)."""
    directory = inst.path("fleet_ssh_control")
    return directory if len(os.fsencode(directory)) <= CONTROL_PATH_MAX else None


def ssh_args(known_hosts: Path, control: Path | None = None) -> str:
    """ssh's options for Ansible: this known-hosts file only, strictly; keys only, no prompts; a master
    connection per host when there is a `control` directory (Ansible names the socket in it)."""
    mux = ["-o ControlMaster=auto", f"-o ControlPersist={CONTROL_PERSIST}"] if control else ["-o ControlMaster=no"]
    return " ".join(["-o StrictHostKeyChecking=yes", f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))}",
                     "-o GlobalKnownHostsFile=/dev/null", "-o UpdateHostKeys=no", "-o IdentitiesOnly=yes",
                     "-o PasswordAuthentication=no", "-o BatchMode=yes", *mux])


def close_masters(directory: Path) -> None:
    """End every master connection whose socket is in `directory` (`ssh -O exit`), remove stale sockets."""
    binary = shutil.which("ssh")
    for sock in sorted(p for p in directory.iterdir() if p.is_socket()):
        if binary is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run([binary, "-F", "none", "-o", f"ControlPath={sock}", "-O", "exit", "fleet-host"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        sock.unlink(missing_ok=True)


@contextlib.contextmanager
def masters(directory: Path | None):
    """The run's master connections: the run holds their directory shared; the last run to leave it (it
    then takes it exclusively) closes them all, so no master outlives the runs using it."""
    if directory is None:
        yield
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            if _exclusive(fd):
                close_masters(directory)
    finally:
        os.close(fd)


def _exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # another run still uses the masters: it closes them when it ends
    return True


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
    control = control_dir(inst)
    env = {**os.environ, "ANSIBLE_CONFIG": str(project / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_SSH_ARGS": ssh_args(inst.get("fleet_known_hosts"), control),
           "ANSIBLE_TIMEOUT": str(int(max(1, inst.get("fleet_connect_timeout")))),
           "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "PYTHONUNBUFFERED": "1"}
    if control is not None:
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control)
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
    with masters(control_dir(inst)), subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE,
                                                       stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(line)
    output = "".join(lines)
    refused, why = host_keys_refused(inst, output)
    output += why
    if echo:
        sys.stderr.write(why)
    result = {"playbook": playbook, "check": check, "limit": limit, "returncode": proc.returncode,
              "extra_vars": extra_vars or {}, "seconds": round(time.monotonic() - t0, 2),
              "hosts": recap(output), "host_key_refused": refused, "reported": reported(output),
              "output_sha256": hashlib.sha256(output.encode()).hexdigest()}
    result["changed"] = sum(h.get("changed", 0) for h in result["hosts"].values())
    result["rescued"] = sum(h.get("rescued", 0) for h in result["hosts"].values())
    EvidenceLog(inst.data_dir).append(kind, result, outcome="ok" if proc.returncode == 0 else "failed")
    result["output"] = output[-20000:]
    return result


def host_keys_refused(inst: Installation, output: str) -> tuple[list[str], str]:
    """The hosts whose key ssh refused in a play's output. A host Ansible calls unreachable without ssh's
    reason (it lost it: ssh ended while the module was being sent) has its key checked as 'erpctl fleet
    ssh-check' does; the result said in a line to add to the output."""
    refused = {m["host"] for m in HOST_KEY_FAILED.finditer(output)}
    unsent = {m["host"] for m in UNSENT.finditer(output)} - refused
    if not unsent:
        return sorted(refused), ""
    targets = [h for h in fleet.hosts(inst, None) if h.name in unsent]
    lines = []
    for r in fleet.on_hosts(targets, fleet.access(inst), None, inst.get("fleet_parallel")):
        if r["outcome"] in ("host-key-changed", "host-key-unknown"):
            refused.add(r["host"])
            lines.append(f"erpctl fleet ssh-check {r['host']}: {r['outcome']}: {r['error']}\n")
    return sorted(refused), "".join(lines)


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
