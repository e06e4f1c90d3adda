"""playbooks/: a proper Ansible project (syntax-check and ansible-lint clean), and a real play run by
`erpctl fleet deploy` over real sshd: the recap per host in the evidence log, and a host whose key
changed since the last run refused by the playbook as by erpctl fleet exec."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from controlplane import layout
from controlplane.installation import Installation
from controlplane.remote import playbook

from ..cli_helpers import erpctl, free_ports, need, ok
from .sshd import Sshd, write_inventory

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


@pytest.fixture(autouse=True)
def _ansible():
    for tool in ("ansible-playbook", "ansible-lint"):
        if shutil.which(tool) is None:
            need(f"{tool} is not installed (Debian: ansible-core, ansible-lint)")


def test_the_project_passes_syntax_check_and_ansible_lint(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  children:\n    app: {hosts: {app1: {}}}\n    loadbalancer: {hosts: {lb1: {}}}\n")
    books = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))
    assert {"site.yml", "check.yml", "upgrade.yml"} <= set(books)
    run = dict(cwd=PLAYBOOKS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    syntax = subprocess.Popen(["ansible-playbook", "-i", str(inventory), "--syntax-check", *books], **run)
    lint = subprocess.Popen(["ansible-lint", "--offline", "--nocolor"], **run)
    for proc, what in ((syntax, "ansible-playbook --syntax-check"), (lint, "ansible-lint")):
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{what}:\n{out}"
    cfg = (PLAYBOOKS / "ansible.cfg").read_text()
    assert "host_key_checking = True" in cfg and "StrictHostKeyChecking=yes" in cfg
    for role in ("erp_app", "haproxy"):
        assert (PLAYBOOKS / "roles" / role / "defaults" / "main.yml").exists()
        assert (PLAYBOOKS / "roles" / role / "handlers" / "main.yml").exists()


def test_a_play_runs_on_the_hosts_and_a_changed_host_key_is_refused(fleet, tmp_path):
    server = Sshd(tmp_path / "sshd", free_ports(1)[0], Path(f"{fleet['client']}.pub")).start()
    try:
        inv = write_inventory(tmp_path / "inventory.yml", {"app1": ("app", fleet["servers"][0]),
                                                           "app3": ("app", server)},
                              fleet["client"], tmp_path / "roots")
        known = tmp_path / "known_hosts"
        known.write_text((fleet["data"] / "fleet" / "known_hosts").read_text())
        args = ("--data-dir", fleet["data"], "--inventory", inv, "--known-hosts", known)
        ok("fleet", "trust", "app3", "--fingerprint", server.fingerprint, *args)
        first = erpctl("--json", "fleet", "deploy", "--playbook", "check.yml", *args, timeout=240)
        assert first.returncode == 0, first.stdout + first.stderr
        assert json.loads(first.stdout)["hosts"]["app3"]["unreachable"] == 0
        # the run's master connections (one per host, reused by its tasks) end with it: none outlives it to
        # carry the next run past the host key check
        control = layout.path(fleet["data"], "fleet_ssh_control")
        assert control.is_dir() and not [p for p in control.iterdir() if p.is_socket()]
        server.rekey()
        r = erpctl("--json", "fleet", "deploy", "--playbook", "check.yml", *args, timeout=240)
        assert r.returncode == 102, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["host_key_refused"] == ["app3"]
        # ssh's own words, or (when Ansible lost them: ssh ended while it sent the module) erpctl's check of the key
        assert ("REMOTE HOST IDENTIFICATION HAS CHANGED" in out["output"]
                or "erpctl fleet ssh-check app3: host-key-changed" in out["output"]), out["output"]
        assert out["hosts"]["app1"]["ok"] >= 2 and out["hosts"]["app1"]["changed"] == 0
        assert out["hosts"]["app3"]["unreachable"] == 1
        assert "app3" in json.loads(r.stderr)["error"]["detail"]
        record = json.loads((fleet["data"] / "evidence.jsonl").read_text().splitlines()[-1])
        assert record["kind"] == "fleet_playbook" and record["outcome"] == "failed"
        assert record["data"]["hosts"]["app1"]["changed"] == 0 and "output" not in record["data"]
        # Ansible's other account of it, without ssh's words (ssh ended while the module was being sent):
        # erpctl checks the host's key itself and names the refusal
        inst = Installation.open(fleet["data"], environ={**os.environ, "ERPCTL_FLEET_INVENTORY": str(inv),
                                                         "ERPCTL_FLEET_KNOWN_HOSTS": str(known)})
        lost = ('fatal: [app3]: UNREACHABLE! => {"changed": false, "msg": "Data could not be sent to remote host '
                '\\"127.0.0.1\\". Make sure this host can be reached over ssh: [Errno 32] Broken pipe"}\n')
        refused, why = playbook.host_keys_refused(inst, lost)
        assert refused == ["app3"] and why.startswith("erpctl fleet ssh-check app3: host-key-changed"), why
    finally:
        server.stop()
