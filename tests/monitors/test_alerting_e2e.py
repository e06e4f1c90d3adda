"""End to end, all real: Prometheus and Alertmanager (Debian's) on loopback scrape a real ERP and a
real control plane (`erpctl up`); the ERP is killed, and ErpDown must reach the control plane's
receiver within for + scrape interval + evaluation interval + group_wait (plus a little slack for
delivery), then resolve once the ERP is back.

`erpctl up` serves the ERP and the control plane from one process, so the `erp` target is a second
process serving the ERP alone on the same database (tests/monitors/erp_only.py); killing it leaves
the control plane running to receive the alert.

The configurations are derived from the examples in monitors/ (prometheus.yml, alertmanager.yml,
alerts.yml, recording.yml), changing only ports, paths and timings: intervals of 1 s, ErpDown's
`for` shortened to FOR_SECONDS, group_wait and group_interval 1 s.
"""

from __future__ import annotations

import copy
import time

import pytest
import requests
import yaml

from tests.controlplane.cli_helpers import free_ports

from .conftest import Process, wait_http
from .helpers import ALERTMANAGER_CONFIG, ALERTS, PROMETHEUS_CONFIG, RECORDING, load_yaml, program

SCRAPE_SECONDS = 1
EVAL_SECONDS = 1
GROUP_WAIT_SECONDS = 1
GROUP_INTERVAL_SECONDS = 1
FOR_SECONDS = 5
SLACK_SECONDS = 5  # delivery: Prometheus -> Alertmanager -> webhook, and the phase of the timers
DETECTION_BOUND = FOR_SECONDS + SCRAPE_SECONDS + EVAL_SECONDS + GROUP_WAIT_SECONDS + SLACK_SECONDS
RESOLVE_BOUND = SCRAPE_SECONDS + EVAL_SECONDS + GROUP_INTERVAL_SECONDS + SLACK_SECONDS
OPS_WEBHOOK = "http://127.0.0.1:8001/alerts/webhook"


def derived_rules(directory) -> list:
    """alerts.yml with ErpDown's `for` shortened (nothing else changed), and recording.yml."""
    alerts = load_yaml(ALERTS)
    found = 0
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ErpDown":
                rule["for"] = f"{FOR_SECONDS}s"
                found += 1
    assert found == 1
    (directory / "alerts.yml").write_text(yaml.safe_dump(alerts, sort_keys=False))
    (directory / "recording.yml").write_text(RECORDING.read_text())
    return [str(directory / "recording.yml"), str(directory / "alerts.yml")]


def derived_prometheus_config(rule_files, erp_port, ops_port, am_port) -> dict:
    cfg = load_yaml(PROMETHEUS_CONFIG)
    cfg["global"].update(scrape_interval=f"{SCRAPE_SECONDS}s", scrape_timeout=f"{SCRAPE_SECONDS}s",
                         evaluation_interval=f"{EVAL_SECONDS}s")
    assert {f.rsplit("/", 1)[-1] for f in rule_files} == set(cfg["rule_files"])
    cfg["rule_files"] = rule_files
    cfg["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
    ports = {"erp": erp_port, "erpctl": ops_port}
    for sc in cfg["scrape_configs"]:
        sc["static_configs"] = [{"targets": [f"127.0.0.1:{ports[sc['job_name']]}"]}]
    return cfg


def derived_alertmanager_config(ops_port, token_file) -> dict:
    cfg = copy.deepcopy(load_yaml(ALERTMANAGER_CONFIG))
    hooks = 0
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if hook["url"] == OPS_WEBHOOK:
                hook["url"] = f"http://127.0.0.1:{ops_port}/alerts/webhook"
                hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
                hooks += 1
    assert hooks >= 1

    def timings(route):
        for key, seconds in (("group_wait", GROUP_WAIT_SECONDS), ("group_interval", GROUP_INTERVAL_SECONDS)):
            if key in route or route is cfg["route"]:
                route[key] = f"{seconds}s"
        for child in route.get("routes", []):
            timings(child)

    timings(cfg["route"])
    return cfg


def _query(prom_url: str, q: str) -> list:
    r = requests.get(prom_url + "/api/v1/query", params={"query": q}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def _erp_down(ops_url: str, headers: dict, section: str) -> list[dict]:
    r = requests.get(ops_url + "/alerts", headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return [a for a in r.json()[section]
            if a["labels"].get("alertname") == "ErpDown" and a["labels"].get("job") == "erp"]


def _wait(what: str, predicate, timeout: float, logs) -> float:
    """Poll every 0.1 s; the seconds it took, or fail with the processes' logs."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.1)
    pytest.fail(f"{what} not within {timeout:.0f}s\n" + "\n".join(f"--- {p.proc.args[0]}\n{p.log[-3000:]}"
                                                                  for p in logs))


def test_erp_down_reaches_the_control_plane_and_resolves(tmp_path, erpctl_up, erp_only):
    prometheus, alertmanager = program("prometheus"), program("prometheus-alertmanager")
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    token_file = erpctl_up.data_dir / WEBHOOK_TOKEN_FILE
    assert token_file.is_file(), "erpctl up did not create the webhook token"
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    ops = erpctl_up.ops_url

    erp = erp_only(erpctl_up.data_dir)
    am_port, prom_port = free_ports(2)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    prom_cfg = tmp_path / "prometheus.yml"
    prom_cfg.write_text(yaml.safe_dump(derived_prometheus_config(
        derived_rules(rules_dir), erp.port, erpctl_up.ops_port, am_port)))
    am_cfg = tmp_path / "alertmanager.yml"
    am_cfg.write_text(yaml.safe_dump(derived_alertmanager_config(erpctl_up.ops_port, token_file)))

    am = Process([alertmanager, f"--config.file={am_cfg}", f"--storage.path={tmp_path / 'am-data'}",
                  f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=debug"],
                 tmp_path / "alertmanager.log")
    prom = Process([prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=debug"],
                   tmp_path / "prometheus.log")
    logs = [prom, am]
    try:
        am_url, prom_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
        wait_http(am_url + "/-/ready", am, timeout=30)
        wait_http(prom_url + "/-/ready", prom, timeout=30)

        # Both targets scraped and healthy, the rules loaded, nothing about the ERP firing yet.
        _wait("both targets up", lambda: {(s["metric"]["job"], s["value"][1]) for s in _query(prom_url, "up")}
              == {("erp", "1"), ("erpctl", "1")}, 30, logs)
        _wait("the recorded series", lambda: _query(prom_url, "instance:erpctl_data_dir_filesystem_free:ratio"),
              30, logs)
        assert not _erp_down(ops, headers, "active")

        t_kill = time.monotonic()
        erp.kill()
        detected = _wait("ErpDown at the control plane's receiver", lambda: _erp_down(ops, headers, "active"),
                         DETECTION_BOUND + 30, logs)
        (alert,) = _erp_down(ops, headers, "active")
        print(f"\nErpDown detection time: {detected:.1f} s from SIGKILL to the control plane's receiver "
              f"(bound {DETECTION_BOUND} s = for {FOR_SECONDS} + scrape {SCRAPE_SECONDS} + evaluation "
              f"{EVAL_SECONDS} + group_wait {GROUP_WAIT_SECONDS} + slack {SLACK_SECONDS})")
        assert detected <= DETECTION_BOUND, f"ErpDown took {detected:.1f}s (bound {DETECTION_BOUND}s)"
        assert time.monotonic() - t_kill >= FOR_SECONDS, "fired before its `for` elapsed"
        assert alert["status"] == "firing"
        assert alert["labels"]["severity"] == "page" and alert["labels"]["team"] == "ops"
        assert alert["labels"]["instance"] == f"127.0.0.1:{erp.port}"
        assert alert["annotations"]["runbook_url"] == "https://erp-controlplane.dev/runbooks/ErpDown.md"
        assert alert["annotations"]["summary"] == "The ERP is down"
        assert f"127.0.0.1:{erp.port}" in alert["annotations"]["description"]
        assert alert["receiver"] == "erpctl-oncall"
        assert alert.get("runbook_path", "").endswith("runbooks/ErpDown.md")

        erp.start()  # the same port: Prometheus' target
        resolved = _wait("ErpDown resolved at the control plane's receiver",
                         lambda: not _erp_down(ops, headers, "active")
                         and _erp_down(ops, headers, "recently_resolved"), RESOLVE_BOUND + 30, logs)
        print(f"ErpDown resolution time: {resolved:.1f} s from the ERP answering again "
              f"(bound {RESOLVE_BOUND} s)")
        assert resolved <= RESOLVE_BOUND, f"resolving took {resolved:.1f}s (bound {RESOLVE_BOUND}s)"
        (done,) = _erp_down(ops, headers, "recently_resolved")
        assert done["status"] == "resolved" and done["startsAt"] == alert["startsAt"]
    finally:
        for p in logs:
            p.stop()
