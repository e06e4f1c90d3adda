"""The load balancer's health as HAProxy sees it: each server of the ERP's backend, its state (UP, DOWN,
MAINT, DRAIN, NOLB) and its last health check, read from HAProxy's runtime API (`show stat`, CSV) with socat
on each host of the inventory's loadbalancer group, over the fleet's SSH (strict host keys, key login).
The socket and backend are the haproxy role's variables (haproxy_admin_socket, haproxy_backend), the
inventory's or the role's defaults."""

from __future__ import annotations

import csv
import io
import shlex
from dataclasses import replace
from pathlib import Path

from ..installation import Installation
from . import fleet, inventory
from .scrape import host_var, role_defaults

STATES = ("UP", "DOWN", "MAINT", "DRAIN", "NOLB")


def present(inst: Installation) -> list[inventory.Host]:
    """The inventory's load balancers; none without an inventory (a single installation)."""
    path = Path(inst.get("fleet_inventory"))
    if not path.is_file():
        return []
    return [h for h in inventory.load(path) if "loadbalancer" in h.groups]


def command(socket: str) -> str:
    return f"printf 'show stat\\n' | socat stdio UNIX-CONNECT:{shlex.quote(str(socket))}"


def parse(text: str, backend: str) -> dict:
    """The backend's servers from `show stat` CSV: name, state (its first word: UP, DOWN, MAINT, DRAIN,
    NOLB...), HAProxy's own status text, the last check, seconds since the last change; and the backend's."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# pxname"):
        raise ValueError(f"not HAProxy's `show stat` output: {text[:200]!r}")
    rows = list(csv.DictReader(io.StringIO("\n".join([lines[0][2:]] + lines[1:]))))
    servers, summary = [], None
    for row in rows:
        if row["pxname"] != backend:
            continue
        status = (row.get("status") or "").strip()
        if row["svname"] == "BACKEND":
            summary = {"status": status, "active_servers": int(row.get("act") or 0)}
        elif row["svname"] != "FRONTEND":
            state = status.split()[0].upper() if status else "?"
            servers.append({"server": row["svname"], "state": "MAINT" if state.startswith("MAINT") else state,
                            "status": status, "check": row.get("check_status") or None,
                            "check_detail": row.get("check_desc") or None,
                            "since_seconds": int(row["lastchg"]) if (row.get("lastchg") or "").isdigit() else None})
    if summary is None:
        raise ValueError(f"HAProxy has no backend {backend!r}")
    return {**summary, "servers": servers}


def health(inst: Installation, timeout: float) -> list[dict]:
    """Each load balancer's backend as HAProxy reports it, or why it could not be read."""
    lbs = present(inst)
    if not lbs:
        return []
    defaults = role_defaults(inst.get("fleet_playbooks_dir"), "haproxy")
    acc = fleet.access(inst)
    acc = replace(acc, connect_timeout=min(acc.connect_timeout, timeout), command_timeout=timeout)
    out = []
    for host in lbs:
        backend = str(host_var(host, defaults, "haproxy_backend") or "erp_app")
        socket = host_var(host, defaults, "haproxy_admin_socket") or "/run/haproxy/admin.sock"
        r = fleet.on_hosts([host], acc, command(socket), 1)[0]
        row = {"host": host.name, "backend": backend, "socket": str(socket)}
        if r["outcome"] != "ok":
            row["error"] = (r.get("error") or r["outcome"]) + (f": {r['stderr'].strip()[-300:]}"
                                                                 if r.get("stderr", "").strip() else "")
        else:
            try:
                row.update(parse(r["stdout"], backend))
            except ValueError as exc:
                row["error"] = f"host {host.name}: {exc}"
        out.append(row)
    return out
