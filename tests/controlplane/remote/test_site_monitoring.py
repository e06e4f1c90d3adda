"""Monitoring a fleet: `erpctl fleet prometheus-config` writes scrape jobs from the inventory that
promtool accepts; on the deployed site (site.py: two app hosts behind HAProxy), `erpctl status` shows
HAProxy's backend servers read over SSH from its runtime API, names a drained server (exit 16) and a
site with no server UP (exit 17) until they are enabled again; HAProxy's exporter reports the state the
alerts read; a real Prometheus scraping the generated configuration finds every target up."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from controlplane.monitoring.prometheus_config import Timings
from controlplane.remote import inventory, scrape

from ..cli_helpers import erpctl, free_ports, need, ok
from .site import haproxy_states

INVENTORY = {"all": {"vars": {"ansible_user": "erp"}, "children": {
    "app": {"hosts": {"app1": {"ansible_host": "10.0.0.11"},
                      "app2": {"ansible_host": "10.0.0.12", "erp_port": 9000, "erp_ops_port": 9001}}},
    "database": {"hosts": {"db1": {"ansible_host": "10.0.0.21"}}},
    "loadbalancer": {"hosts": {"lb1": {"ansible_host": "10.0.0.5"}}}}}}


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        need("promtool is not installed (Debian: prometheus)")
    return found


def test_prometheus_config_from_the_inventory_passes_promtool(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(INVENTORY))
    out = tmp_path / "prometheus.yml"
    token = tmp_path / "metrics.token"
    token.write_text("a metrics token\n")
    r = ok("--json", "fleet", "prometheus-config", "--data-dir", tmp_path / "data", "--inventory", inv,
           "--output", out, "--metrics-token-file", token)
    assert json.loads(r.stdout)["jobs"] == {"erp_app": ["app1", "app2"], "erpctl": ["app1", "app2"],
                                            "haproxy": ["lb1"]}
    check = subprocess.run([_promtool(), "check", "config", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    cfg = yaml.safe_load(out.read_text())
    jobs = {sc["job_name"]: sc for sc in cfg["scrape_configs"]}
    # the inventory's ports, else the roles' defaults (8000, 8001, 8404)
    assert [(s["targets"], s["labels"]) for s in jobs["erp_app"]["static_configs"]] == [
        (["10.0.0.11:8000"], {"instance": "app1", "role": "app"}),
        (["10.0.0.12:9000"], {"instance": "app2", "role": "app"})]
    assert [s["targets"] for s in jobs["erpctl"]["static_configs"]] == [["10.0.0.11:8001"], ["10.0.0.12:9001"]]
    assert jobs["haproxy"]["static_configs"] == [{"targets": ["10.0.0.5:8404"],
                                                  "labels": {"instance": "lb1", "role": "loadbalancer"}}]
    assert jobs["erp_app"]["authorization"] == {"credentials_file": str(token)}
    assert "authorization" not in jobs["haproxy"]
    inv.write_text(yaml.safe_dump({"all": {"children": {"database": {"hosts": {"db1": None}}}}}))
    bad = erpctl("fleet", "prometheus-config", "--data-dir", tmp_path / "data", "--inventory", inv, "--output",
                 tmp_path / "none.yml")
    assert bad.returncode != 0 and "no host in the app group" in bad.stderr and not (tmp_path / "none.yml").exists()


def _status(r: dict) -> tuple[int, dict]:
    """`erpctl status` of the control host's installation, the ERP seen through HAProxy."""
    res = erpctl("--json", "status", "--data-dir", r["ctl"], "--erp-url", r["lb"], "--no-recheck",
                 ERPCTL_FLEET_INVENTORY=str(r["inventory"]), ERPCTL_DATABASE_URL=r["url"])
    return res.returncode, json.loads(res.stdout)


def _balancer(report: dict) -> dict:
    (lb,) = report["loadbalancer"]
    assert lb["host"] == "lb1" and lb["backend"] == "erp_app", lb
    return {s["server"]: s["state"] for s in lb["servers"]}


def _lb_attention(report: dict) -> list[dict]:
    return [a for a in report["attention"] if "load balancer" in a["what"] or a["what"] == "site down"]


def _admin(r: dict, line: str) -> None:
    out = subprocess.run(["socat", "stdio", f"UNIX-CONNECT:{r['socket']}"], input=line + "\n", text=True,
                         capture_output=True, check=True).stdout
    assert out.strip() == "", out


def _stats_port(r: dict) -> int:
    return yaml.safe_load(r["inventory"].read_text())["all"]["children"]["loadbalancer"]["hosts"]["lb1"][
        "haproxy_stats_port"]


def _exporter(r: dict) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{_stats_port(r)}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _until(fn, seconds: float = 15):
    deadline = time.monotonic() + seconds
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


@pytest.mark.postgres
def test_status_shows_the_balancer_and_names_a_drained_server_until_it_is_enabled(deployed):
    r = deployed
    code, report = _status(r)
    assert _balancer(report) == {"app1": "UP", "app2": "UP"} and _lb_attention(report) == []
    # the control host's installation has never been backed up (a warning), nothing critical
    assert code == 16 and report["state"] == "warning", report["attention"]
    before = [a["what"] for a in report["attention"]]
    human = erpctl("status", "--data-dir", r["ctl"], "--erp-url", r["lb"], "--no-recheck",
                   ERPCTL_FLEET_INVENTORY=str(r["inventory"])).stdout
    assert "balancer   lb1 backend erp_app: 2 of 2 server(s) UP" in human, human
    _admin(r, "set server erp_app/app2 state drain")
    try:
        assert haproxy_states(r) == {"app1": "UP", "app2": "DRAIN"}
        code, report = _status(r)
        assert _balancer(report) == {"app1": "UP", "app2": "DRAIN"}
        (flag,) = _lb_attention(report)
        assert flag["level"] == "warning" and flag["what"] == "load balancer server app2 drained", flag
        assert flag["runbook_url"].endswith("/LoadBalancerBackendDown.md")
        assert code == 16 and report["state"] == "warning", report["attention"]
        assert sorted(a["what"] for a in report["attention"] if a is not flag) == sorted(before)
        # HAProxy's exporter says the same (LoadBalancerBackendDown reads it)
        metrics = _exporter(r)
        assert 'haproxy_server_status{proxy="erp_app",server="app2",state="DRAIN"} 1' in metrics
        assert 'haproxy_backend_active_servers{proxy="erp_app"} 1' in metrics
        _admin(r, "set server erp_app/app1 state maint")  # no server left: the site serves nobody
        code, report = _status(r)
        assert _balancer(report) == {"app1": "MAINT", "app2": "DRAIN"}
        assert code == 17 and report["state"] == "critical", report["attention"]
        assert {(a["level"], a["what"]) for a in _lb_attention(report)} == {
            ("critical", "site down"), ("warning", "load balancer server app1 in maintenance"),
            ("warning", "load balancer server app2 drained")}
    finally:
        _admin(r, "set server erp_app/app1 state ready")
        _admin(r, "set server erp_app/app2 state ready")
    assert _until(lambda: haproxy_states(r) == {"app1": "UP", "app2": "UP"})
    code, report = _status(r)
    assert _balancer(report) == {"app1": "UP", "app2": "UP"} and _lb_attention(report) == []
    assert [a["what"] for a in report["attention"]] == before


@pytest.mark.postgres
def test_a_real_prometheus_scraping_the_generated_configuration_finds_every_target_up(deployed, tmp_path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        need("prometheus is not installed (Debian: prometheus)")
    r = deployed
    cfg = scrape.config(inventory.load(r["inventory"]), Path(__file__).parents[3] / "playbooks", None,
                        timings=Timings(scrape="1s", evaluation="1s"))
    (tmp_path / "prometheus.yml").write_text(scrape.dump(cfg))
    (port,) = free_ports(1)
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def ups():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query=up", timeout=5) as resp:
                    rows = json.loads(resp.read())["data"]["result"]
            except OSError:
                return None
            found = {(x["metric"]["job"], x["metric"]["instance"], x["metric"]["role"]): x["value"][1] for x in rows}
            return found if len(found) == 5 and set(found.values()) == {"1"} else None

        found = _until(ups, 30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert found == {("erp_app", "app1", "app"): "1", ("erp_app", "app2", "app"): "1", ("erpctl", "app1", "app"): "1",
                     ("erpctl", "app2", "app"): "1", ("haproxy", "lb1", "loadbalancer"): "1"}, found
