"""Work on many hosts at once: each host's own result (never one host's failure hiding another's),
at most `parallel` hosts at a time, and one exit code for the whole: host key refused (102) before
unreachable (101) before a command that failed (103)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable

from ..errors import FleetError, HostKeyRefused, HostUnreachable, RemoteCommandFailed
from ..evidence import EvidenceLog
from ..installation import Installation
from ..layout import name as layout_name
from . import inventory, ssh
from .hostkeys import fingerprint
from .inventory import Host

SEVERITY = ("host-key-unknown", "host-key-changed", "unreachable", "auth-failed", "failed", "timeout")


def access(inst: Installation) -> ssh.Access:
    return ssh.Access(inst.get("fleet_known_hosts"), inst.get("fleet_identity_file"),
                      inst.get("fleet_connect_timeout"), inst.get("fleet_command_timeout"))


def hosts(inst: Installation, limit: str | None) -> list[Host]:
    return inventory.select(inventory.load(inst.get("fleet_inventory")), limit)


def host(inst: Installation, name: str) -> Host:
    """The inventory's host called `name`."""
    for h in inventory.load(inst.get("fleet_inventory")):
        if h.name == name:
            return h
    raise FleetError(f"no host {name!r} in the inventory {inst.get('fleet_inventory')}",
                     fix="'erpctl fleet status' lists the hosts.")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _on(host: Host, acc: ssh.Access, command: str | None) -> dict:
    """Log in to `host` (and run `command` there): its result, whatever happened."""
    result = {"host": host.name, "address": host.address, "port": host.port, "roles": host.roles,
              "started": _now()}
    t0 = time.monotonic()
    try:
        client = ssh.connect(host, acc)
    except HostKeyRefused as exc:
        result.update(outcome="host-key-changed" if exc.changed else "host-key-unknown", error=exc.detail,
                      fix=exc.fix, fingerprint=exc.fingerprint)
    except HostUnreachable as exc:
        result.update(outcome=getattr(exc, "outcome", "unreachable"), error=exc.detail, fix=exc.fix)
    else:
        try:
            result.update(server=client.get_transport().remote_version,
                          fingerprint=_fingerprint(client))
            if command is not None:
                result.update(_command(client, host, command, acc.command_timeout))
            else:
                result["outcome"] = "ok"
        except (OSError, EOFError) as exc:
            result.update(outcome="unreachable", error=f"host {host.name}: connection lost ({exc})")
        finally:
            client.close()
    result.update(finished=_now(), seconds=round(time.monotonic() - t0, 3))
    return result


def _fingerprint(client) -> str:
    return fingerprint(client.get_transport().get_remote_server_key())


def _command(client, host: Host, command: str, timeout: float) -> dict:
    out = ssh.run(client, ssh.in_root(host, command), timeout)
    outcome = "timeout" if out.timed_out else ("ok" if out.exit_code == 0 else "failed")
    res = {"outcome": outcome, "exit_code": out.exit_code, "stdout": out.stdout.text(), "stderr": out.stderr.text(),
           "stdout_sha256": out.stdout.digest.hexdigest(), "stderr_sha256": out.stderr.digest.hexdigest(),
           "stdout_bytes": out.stdout.size, "stderr_bytes": out.stderr.size}
    if out.timed_out:
        res["error"] = f"host {host.name}: the command ran past {timeout:g} s and was stopped"
    elif out.exit_code != 0:
        res["error"] = f"host {host.name}: the command exited {out.exit_code}"
    return res


def on_hosts(targets: list[Host], acc: ssh.Access, command: str | None, parallel: int,
             progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Every host's result, in inventory order; at most `parallel` hosts at once."""
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="fleet") as pool:
        futures = [pool.submit(_on, h, acc, command) for h in targets]
        results = []
        for f in futures:
            results.append(f.result())
            if progress:
                progress(results[-1])
    return results


def failure(results: list[dict]) -> FleetError | None:
    """The error for the run (None when every host is ok): the most serious kind decides the code."""
    bad = [r for r in results if r["outcome"] != "ok"]
    if not bad:
        return None
    bad.sort(key=lambda r: SEVERITY.index(r["outcome"]))
    first, names = bad[0], ", ".join(f"{r['host']} ({r['outcome']})" for r in bad)
    kind = {"host-key-unknown": HostKeyRefused, "host-key-changed": HostKeyRefused, "unreachable": HostUnreachable,
            "auth-failed": HostUnreachable}.get(first["outcome"], RemoteCommandFailed)
    return kind(f"{len(bad)} of {len(results)} host(s) failed: {names}. {first['error']}",
                fix=first.get("fix") or "The per-host results (--json) say what each host answered.")


def record(inst: Installation, kind: str, command: str | None, results: list[dict], parallel: int) -> dict:
    """The run in the evidence log: hosts, command, exit codes and output digests (never the output)."""
    hosts_ = [{k: r.get(k) for k in ("host", "address", "port", "outcome", "exit_code", "fingerprint",
                                      "stdout_sha256", "stderr_sha256", "stdout_bytes", "stderr_bytes", "seconds")
               if r.get(k) is not None} for r in results]
    data = {"command": command, "parallel": parallel, "hosts": hosts_}
    outcome = "ok" if failure(results) is None else "failed"
    return EvidenceLog(inst.data_dir).append(kind, data, outcome=outcome)


STATUS_SCRIPT = (
    "printf 'hostname=%s\\n' \"$(uname -n)\"; "
    "printf 'load=%s\\n' \"$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)\"; "
    "printf 'uptime_seconds=%s\\n' \"$(cut -d' ' -f1 /proc/uptime 2>/dev/null)\"; "
    "printf 'disk_free_bytes=%s\\n' \"$(df -Pk . | awk 'NR==2{print $4*1024}')\"; "
    f"printf 'release=%s\\n' \"$(basename \"$(readlink {layout_name('release_current')} 2>/dev/null)\" "
    "2>/dev/null)\"")


def parse_status(stdout: str) -> dict:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def logs_command(lines: int) -> str:
    return f"tail -n {int(lines)} {layout_name('up_log')}"
