"""The deployed site the fleet's end-to-end tests share (package scope): two app hosts (each its own sshd, host
key and erp_root, its own `erpctl up` on its own ports) against one PostgreSQL database, HAProxy in front
(started by the haproxy role, drained and re-enabled through its runtime API). The fixture prepares the
inventory and release wheels; test_rolling_upgrade.py deploys it first, and a module that runs after it
(test_site_*.py) finds it serving (`deployed` deploys it when run alone)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from ..cli_helpers import erpctl, erpctl_path, free_ports, need, ok
from ..release_helpers import (FIXTURE_ADMIN, FIXTURE_KEY, SIGNING_KEY, WHEEL_1_0, build_tree_wheel,
                               copy_signed)
from tests.conftest import clone_pg_database

OLD = "1.0.0"


def get(url: str, token: str | None = None, body: dict | None = None, timeout: float = 15):
    req = urllib.request.Request(url, method="POST" if body is not None else "GET",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Connection": "close",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            data = raw[:200].decode(errors="replace")
        return exc.code, data, dict(exc.headers)


class Client:
    """A business user creating sales orders through HAProxy the whole time: each request's latency and
    answer; an order counts as saved when the ERP answered 201 with its id. A 503 with Retry-After is the
    ERP's documented "read-only for a moment, send it again" (the staged upgrade's verify and switch; release
    1.0 says so with its maintenance problem type):
    retried, counted apart; anything else (a refused or cut connection, another status) is a failure."""

    def __init__(self, base: str):
        self.api = base + "/api/v1"
        self.saved: list[dict] = []
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.retried = 0
        self.read_only: list[float] = []  # when a write was refused as read-only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="business-client")
        status, data, _ = get(self.api + "/auth/login", body={"username": FIXTURE_ADMIN[0],
                                                               "password": FIXTURE_ADMIN[1]})
        assert status == 200, data
        self.token = data["token"]
        self.customer = next(p["id"] for p in self._list("/partners?limit=200") if p["is_customer"])
        self.product = self._list("/products?limit=5")[0]["id"]
        self.warehouse = self._list("/warehouses")[0]["id"]

    def _list(self, path: str) -> list:
        status, data, _ = get(self.api + path, self.token)
        assert status == 200, data
        return data["items"]

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                status, data, headers = get(self.api + "/sales-orders", self.token, {
                    "partner_id": self.customer, "warehouse_id": self.warehouse,
                    "lines": [{"product_id": self.product, "quantity": "1"}]})
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self.latencies.append(time.monotonic() - t0)
            if status == 201:
                self.saved.append({"id": data["id"], "number": data["number"]})
            elif status == 503 and (headers.get("Retry-After") or str((data or {}).get("type", "")).endswith(
                    "/maintenance")):  # release 1.0 says "maintenance" without a Retry-After
                self.retried += 1
                self.read_only.append(time.monotonic())
                time.sleep(0.2)
            else:
                self.failures.append(f"{status} {str(data)[:200]}")
            time.sleep(0.02)

    def __enter__(self) -> "Client":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)


def prepare(fleet, tmp_path_factory, request, pg_1_0_template):
    """The inventory, wheels and ports of the site; yields its description, stops what it started."""
    for tool in ("ansible-playbook", "haproxy", "socat"):
        if shutil.which(tool) is None:
            need(f"{tool} is not installed (Debian: ansible-core, haproxy, socat)")
    tmp = tmp_path_factory.mktemp("rolling")
    wheels = tmp / "wheels"
    wheels.mkdir()
    copy_signed(WHEEL_1_0, wheels)
    new = copy_signed(build_tree_wheel(tmp_path_factory.getbasetemp() / "tree-wheel"), wheels)
    new_version = new.name.split("-")[1]
    url = clone_pg_database(pg_1_0_template, "erp_roll", request)
    ports = free_ports(6)
    roots = tmp / "roots"
    hosts = {"app1": fleet["servers"][0], "app2": fleet["servers"][1], "lb1": fleet["servers"][0]}
    own = {name: {"ansible_host": "127.0.0.1", "ansible_port": server.port, "erp_root": str(roots / name)}
           for name, server in hosts.items()}
    own["app1"].update(erp_port=ports[0], erp_ops_port=ports[1])
    own["app2"].update(erp_port=ports[2], erp_ops_port=ports[3])
    lb = roots / "lb1"
    own["lb1"].update(haproxy_install=False, haproxy_service_manager="pidfile", haproxy_config=str(lb / "haproxy.cfg"),
                      haproxy_pidfile=str(lb / "haproxy.pid"), haproxy_admin_socket=str(lb / "admin.sock"),
                      haproxy_log="127.0.0.1:9", haproxy_frontend_port=ports[4], haproxy_stats_port=ports[5],
                      haproxy_check_interval="1s")
    for root in own.values():
        Path(root["erp_root"]).mkdir(parents=True, exist_ok=True)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    inventory = tmp / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_user": user, "ansible_ssh_private_key_file": str(fleet["client"]), "ansible_become": False,
                 "erp_user": user, "erp_create_user": False, "erp_erpctl": erpctl_path(),
                 "erp_service_manager": "erpctl", "erp_listen": "127.0.0.1", "erp_release_version": OLD,
                 "erp_release_wheel": f"{wheels}/erp_controlplane-{{{{ erp_release_version }}}}-py3-none-any.whl",
                 "erp_release_trusted_keys": [f"{SIGNING_KEY}.pub"], "erp_database_url": url,
                 "erp_field_key": FIXTURE_KEY, "erp_backup_passphrase": "rolling upgrade test passphrase",
                 "erp_probe_password": "rolling upgrade probe password",
                 "erp_ready_retries": 15, "erp_ready_delay": 1,
                 # the business client logs in as the fixture database's one user, its admin, with a password
                 "erp_mfa_roles": "none"},
        "children": {"app": {"hosts": {"app1": own["app1"], "app2": own["app2"]}},
                     "loadbalancer": {"hosts": {"lb1": own["lb1"]}}}}}, sort_keys=False))
    ctl = tmp / "ctl"
    (ctl / "fleet").mkdir(parents=True)
    shutil.copy(fleet["data"] / "fleet" / "known_hosts", ctl / "fleet" / "known_hosts")
    info = {"tmp": tmp, "roots": roots, "ctl": ctl, "inventory": inventory, "url": url, "new": new_version,
            "wheel": new, "lb": f"http://127.0.0.1:{ports[4]}", "ports": {"app1": ports[0], "app2": ports[2]},
            "socket": lb / "admin.sock"}
    yield info
    for name in ("app1", "app2"):
        erpctl("stop", "--data-dir", roots / name, timeout=120)
    pidfile = lb / "haproxy.pid"
    if pidfile.exists():
        for pid in pidfile.read_text().split():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


def run_fleet(r: dict, *args, timeout: float = 900):
    return erpctl("--json", "fleet", *args, "--data-dir", r["ctl"], "--inventory", r["inventory"], timeout=timeout)


def changed_tasks(output: str) -> list[str]:
    """The tasks that reported a change (for a failed idempotence check)."""
    task, out = "", []
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip("* ")
        elif line.startswith("changed: "):
            out.append(f"{task}: {line[:120]}")
    return out


def versions(r: dict) -> dict:
    out = {}
    for name, port in r["ports"].items():
        status, body, _ = get(f"http://127.0.0.1:{port}/healthz")
        out[name] = body["version"] if status == 200 else status
    return out


def current(r: dict) -> dict:
    out = {}
    for name in r["ports"]:
        shown = json.loads(ok("--json", "release", "current", "--data-dir", r["roots"] / name).stdout)
        out[name] = shown["current"]["version"]
    return out


def through_haproxy(r: dict, n: int = 10) -> set:
    seen = set()
    for _ in range(n):
        status, body, _ = get(r["lb"] + "/healthz")
        assert status == 200, body
        seen.add(body["version"])
    return seen


def haproxy_states(r: dict) -> dict:
    out = subprocess.run(["socat", "stdio", f"UNIX-CONNECT:{r['socket']}"], input="show stat\n", text=True,
                         capture_output=True, check=True).stdout
    return {f[1]: f[17].split()[0] for f in (line.split(",") for line in out.splitlines()) if f[0] == "erp_app"
            and f[1] not in ("FRONTEND", "BACKEND")}


def serving(r: dict) -> bool:
    """Both app hosts answer their health check."""
    try:
        return all(isinstance(v, str) for v in versions(r).values())
    except OSError:
        return False
