"""The fleet's inventory: hosts and their roles, in Ansible's own YAML inventory format, so that
`ansible-inventory -i FILE --list` and the playbooks read the very file erpctl reads.

    all:
      vars: {ansible_user: erp, ansible_ssh_private_key_file: /etc/erpctl/fleet_ed25519}
      children:
        app:          {hosts: {app1: {ansible_host: 10.0.0.11, erp_root: /srv/erp}, app2: {...}}}
        database:     {hosts: {db1: {ansible_host: 10.0.0.21}}}
        loadbalancer: {hosts: {lb1: {ansible_host: 10.0.0.5}}}
        backup:       {hosts: {backup1: {ansible_host: 10.0.0.31}}}

A host's variables are its groups' `vars` (outer groups first) overridden by its own, as Ansible does.
erpctl reads ansible_host, ansible_port, ansible_user, ansible_ssh_private_key_file and erp_root (the
directory the ERP lives in on that host; commands run there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import FleetError

ROLES = ("app", "database", "loadbalancer", "backup")
FIX = "Write the inventory in Ansible's YAML format (docs/fleet.md shows one); check it with " \
      "'ansible-inventory -i FILE --list'."


@dataclass(frozen=True)
class Host:
    """One host of the inventory, its variables merged as Ansible merges them."""

    name: str
    groups: tuple[str, ...]
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port") or 22)

    @property
    def user(self) -> str | None:
        user = self.vars.get("ansible_user")
        return str(user) if user else None

    @property
    def key_file(self) -> str | None:
        key = self.vars.get("ansible_ssh_private_key_file") or self.vars.get("ansible_private_key_file")
        return str(key) if key else None

    @property
    def root(self) -> str | None:
        root = self.vars.get("erp_root")
        return str(root) if root else None

    @property
    def roles(self) -> list[str]:
        return [g for g in self.groups if g in ROLES]

    def as_dict(self) -> dict:
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "roles": self.roles, "groups": list(self.groups), "root": self.root}


def _mapping(node, where: str) -> Mapping:
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise FleetError(f"inventory: {where} is not a mapping", fix=FIX)
    return node


def _walk(group: str, node, inherited: dict, path: tuple[str, ...], out: dict) -> None:
    node = _mapping(node, f"group {group!r}")
    merged = {**inherited, **_mapping(node.get("vars"), f"{group}.vars")}
    groups = path + (group,)
    for name, own in _mapping(node.get("hosts"), f"{group}.hosts").items():
        groups_before, vars_before = out.get(name, ((), {}))
        all_groups = groups_before + tuple(g for g in groups if g not in groups_before)
        out[name] = (all_groups, {**vars_before, **merged, **_mapping(own, f"host {name!r}")})
    for child, sub in _mapping(node.get("children"), f"{group}.children").items():
        _walk(str(child), sub, merged, groups, out)


def load(path: Path) -> list[Host]:
    """Every host of the inventory at `path`, in the order the file names them."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise FleetError(f"no fleet inventory at {path}",
                         fix=f"Create it (docs/fleet.md), or point --inventory / [fleet] inventory at yours. {FIX}") \
            from None
    except yaml.YAMLError as exc:
        raise FleetError(f"the fleet inventory {path} is not YAML: {exc}", fix=FIX) from None
    data = _mapping(data, "the top level")
    if "all" not in data:
        data = {"all": {"children": data}}
    out: dict[str, tuple[tuple[str, ...], dict]] = {}
    _walk("all", data["all"], {}, (), out)
    return [Host(name, tuple(g for g in groups if g != "all"), vars_) for name, (groups, vars_) in out.items()]


def select(hosts: list[Host], limit: str | None) -> list[Host]:
    """The hosts named by `limit`: comma-separated host or group names (Ansible's --limit, simply);
    all hosts without one."""
    if not limit:
        chosen = hosts
    else:
        wanted = {w.strip() for w in limit.split(",") if w.strip()}
        chosen = [h for h in hosts if h.name in wanted or wanted & set(h.groups) or "all" in wanted]
        known = {h.name for h in hosts} | {g for h in hosts for g in h.groups} | {"all"}
        if unknown := sorted(wanted - known):
            raise FleetError(f"--limit names no host or group of the inventory: {', '.join(unknown)}",
                             fix="'erpctl fleet status' lists the hosts and their roles.")
    if not chosen:
        raise FleetError("the inventory has no host to act on", fix=FIX)
    return chosen
