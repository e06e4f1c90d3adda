"""A real alerting pipeline for the end-to-end tests: Prometheus and Alertmanager (Debian's) on
loopback with configurations derived from the shipped ones in monitors/, changing only ports, paths
and timings, and the receivers a person and a dead-man service would run, as real HTTP servers in
the test process.

Timings of the test copies: scrape and evaluation every second, the `for` of the alerts a test
names shortened (and their 1m range windows to the same), group_wait and group_interval 1 s on every route that sets them, the dead-man
route's repeat_interval 2 s, and Prometheus' resend delay 1 s (an alert it stops sending is valid
for 4 resend delays in Alertmanager, 4 minutes with the default).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
DEADMAN_REPEAT_SECONDS = 2
RESEND_DELAY_SECONDS = 1
FOR_SECONDS = 5
SLACK_SECONDS = 5  # delivery: Prometheus -> Alertmanager -> webhook, and the phase of the timers
PAGE_BOUND = FOR_SECONDS + SCRAPE_SECONDS + EVAL_SECONDS + GROUP_WAIT_SECONDS + SLACK_SECONDS
OPS_WEBHOOK = "http://127.0.0.1:8001/alerts/webhook"


class Receiver:
    """An Alertmanager webhook receiver: every notification, with the monotonic time it arrived."""

    def __init__(self, name: str):
        self.name = name
        self.received: list[tuple[float, dict]] = []
        lock = self._lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with lock:
                    received.append((time.monotonic(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{name}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, alertname: str, status: str = "firing", since: float = 0.0) -> list[tuple[float, dict]]:
        """(arrival, alert) of every notified alert of that name and status that arrived after `since`."""
        with self._lock:
            return [(t, a) for t, body in self.received if t >= since for a in body["alerts"]
                    if a["labels"].get("alertname") == alertname and a["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _rules(directory, shortened: dict[str, str]) -> list[str]:
    alerts = load_yaml(ALERTS)
    found = set()
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in shortened:
                rule["for"] = shortened[rule["alert"]]
                rule["expr"] = rule["expr"].replace("[1m]", f"[{shortened[rule['alert']]}]")
                found.add(rule["alert"])
    assert found == set(shortened), set(shortened) - found
    (directory / "alerts.yml").write_text(yaml.safe_dump(alerts, sort_keys=False))
    (directory / "recording.yml").write_text(RECORDING.read_text())
    return [str(directory / "recording.yml"), str(directory / "alerts.yml")]


def prometheus_config(rule_files, targets: dict[str, str], am_port: int) -> dict:
    cfg = load_yaml(PROMETHEUS_CONFIG)
    cfg["global"].update(scrape_interval=f"{SCRAPE_SECONDS}s", scrape_timeout=f"{SCRAPE_SECONDS}s",
                         evaluation_interval=f"{EVAL_SECONDS}s")
    assert {f.rsplit("/", 1)[-1] for f in rule_files} == set(cfg["rule_files"])
    cfg["rule_files"] = rule_files
    cfg["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
    for sc in cfg["scrape_configs"]:
        sc["static_configs"] = [{"targets": [targets[sc["job_name"]]]}]
    return cfg


def alertmanager_config(ops_port: int, token_file, oncall: Receiver, deadman: Receiver) -> dict:
    """The shipped routes and receivers; the control plane's webhook on `ops_port`, the person's and
    the dead-man receivers replaced by the test's."""
    cfg = copy.deepcopy(load_yaml(ALERTMANAGER_CONFIG))
    hooks = 0
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if hook["url"] == OPS_WEBHOOK:
                hook["url"] = f"http://127.0.0.1:{ops_port}/alerts/webhook"
                hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
                hooks += 1
        if receiver["name"] in ("oncall", "deadman"):
            (hook,) = receiver["webhook_configs"]
            hook["url"] = (oncall if receiver["name"] == "oncall" else deadman).url
    assert hooks >= 1

    def timings(route):
        for key, seconds in (("group_wait", GROUP_WAIT_SECONDS), ("group_interval", GROUP_INTERVAL_SECONDS)):
            if key in route or route is cfg["route"]:
                route[key] = f"{seconds}s"
        if route.get("receiver") == "deadman" and route is not cfg["route"]:
            route["repeat_interval"] = f"{DEADMAN_REPEAT_SECONDS}s"
        for child in route.get("routes", []):
            timings(child)

    timings(cfg["route"])
    return cfg


@dataclass
class Pipeline:
    prometheus: Process
    alertmanager: Process
    prom_url: str
    am_url: str
    oncall: Receiver
    deadman: Receiver

    @property
    def logs(self) -> list[Process]:
        return [self.prometheus, self.alertmanager]

    def query(self, q: str) -> list:
        r = requests.get(self.prom_url + "/api/v1/query", params={"query": q}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def wait(self, what: str, predicate, timeout: float) -> float:
        """Poll every 0.1 s; the seconds it took, or fail with the processes' logs."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if predicate():
                return time.monotonic() - t0
            time.sleep(0.1)
        pytest.fail(f"{what} not within {timeout:.0f}s\n" + "\n".join(
            f"--- {p.proc.args[0]}\n{p.log[-3000:]}" for p in self.logs))

    def stop(self) -> None:
        for p in self.logs:
            p.stop()
        self.oncall.close()
        self.deadman.close()


def start_pipeline(tmp_path, targets: dict[str, str], ops_port: int, token_file,
                   shortened: tuple[str, ...] = ("ErpDown",)) -> Pipeline:
    """Prometheus scraping `targets` ({job: host:port}) with the shipped rules (`shortened` alerts'
    `for` set to FOR_SECONDS, Watchdog's too), Alertmanager with the shipped routes, both ready."""
    prometheus, alertmanager = program("prometheus"), program("prometheus-alertmanager")
    am_port, prom_port = free_ports(2)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    rule_files = _rules(rules_dir, {name: f"{FOR_SECONDS}s" for name in (*shortened, "Watchdog")})
    prom_cfg, am_cfg = tmp_path / "prometheus.yml", tmp_path / "alertmanager.yml"
    prom_cfg.write_text(yaml.safe_dump(prometheus_config(rule_files, targets, am_port)))
    oncall, deadman = Receiver("oncall"), Receiver("deadman")
    am_cfg.write_text(yaml.safe_dump(alertmanager_config(ops_port, token_file, oncall, deadman)))
    am = Process([alertmanager, f"--config.file={am_cfg}", f"--storage.path={tmp_path / 'am-data'}",
                  f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=debug"],
                 tmp_path / "alertmanager.log")
    prom = Process([prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=debug",
                    f"--rules.alert.resend-delay={RESEND_DELAY_SECONDS}s"], tmp_path / "prometheus.log")
    pipe = Pipeline(prom, am, f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", oncall, deadman)
    try:
        wait_http(pipe.am_url + "/-/ready", am, timeout=30)
        wait_http(pipe.prom_url + "/-/ready", prom, timeout=30)
    except BaseException:
        pipe.stop()
        raise
    return pipe


def shipped_page_seconds(alertname: str) -> float:
    """Detection to page with the shipped intervals, worst case: the alert's `for`, one scrape and
    one evaluation interval, and the page route's group_wait."""
    rule = next(r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if r.get("alert") == alertname)
    glob = load_yaml(PROMETHEUS_CONFIG)["global"]
    (route,) = [r for r in load_yaml(ALERTMANAGER_CONFIG)["route"]["routes"] if r["receiver"] == "oncall"]
    return sum(_seconds(v) for v in (rule["for"], glob["scrape_interval"], glob["evaluation_interval"],
                                     route["group_wait"]))


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]
