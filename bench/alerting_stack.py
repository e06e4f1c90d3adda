"""A real alerting pipeline for one installation: Prometheus and Alertmanager (Debian's packages) on
loopback with configurations derived from the shipped ones in monitors/, and the receivers a person
and a dead-man service would run, as real HTTP servers in this process.

Only ports, paths and receiver URLs are changed, unless a caller asks for shorter timings (the
end-to-end tests do, tests/monitors/alerting.py; bench/incidents.py keeps the shipped ones). Used by
bench/incidents.py and the tests; it imports nothing from tests/.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from controlplane.monitoring.prometheus_config import (ALERTMANAGER_CONFIG, ALERTS, MONITORS,  # noqa: F401
                                                      PROMETHEUS_CONFIG, RECORDING, SHIPPED, Timings, alert_rule,
                                                      load_yaml, prometheus_config, rule_files, seconds)

ROOT = Path(__file__).resolve().parents[1]
OPS_WEBHOOK = "http://127.0.0.1:8001/alerts/webhook"  # the control plane's receiver in alertmanager.yml
RECEIVERS = ("oncall", "deadman")  # the ones replaced by this process's
PROMETHEUS_RESEND_DELAY_SECONDS = 60  # Prometheus' default --rules.alert.resend-delay


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


def alertmanager_config(ops_port: int, token_file, oncall_url: str, deadman_url: str,
                        timings: Timings = SHIPPED) -> dict:
    """The shipped routes and receivers; the control plane's webhook on `ops_port`, the person's and
    the dead-man receivers at the given URLs."""
    cfg = copy.deepcopy(load_yaml(ALERTMANAGER_CONFIG))
    hooks = 0
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if hook["url"] == OPS_WEBHOOK:
                hook["url"] = f"http://127.0.0.1:{ops_port}/alerts/webhook"
                hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
                hooks += 1
        if receiver["name"] in RECEIVERS:
            (hook,) = receiver["webhook_configs"]
            hook["url"] = oncall_url if receiver["name"] == "oncall" else deadman_url
    assert hooks >= 1

    def retime(route):
        for key in ("group_wait", "group_interval"):
            value = getattr(timings, key)
            if value and (key in route or route is cfg["route"]):
                route[key] = value
        if timings.deadman_repeat and route.get("receiver") == "deadman" and route is not cfg["route"]:
            route["repeat_interval"] = timings.deadman_repeat
        for child in route.get("routes", []):
            retime(child)

    retime(cfg["route"])
    return cfg


def first_route(labels: dict) -> dict:
    """The first child route of the shipped alertmanager.yml an alert with `labels` matches (the root
    when none), with the root's timings filled in."""
    root = load_yaml(ALERTMANAGER_CONFIG)["route"]
    for route in root.get("routes", []):
        if all(_matches(m, labels) for m in route.get("matchers", [])):
            return {**{k: root[k] for k in ("group_wait", "group_interval", "repeat_interval")}, **route}
    return root


def _matches(matcher: str, labels: dict) -> bool:
    name, op, value = re.fullmatch(r'(\w+)\s*(=~|!=|=)\s*"(.*)"', matcher).groups()
    got = labels.get(name, "")
    return {"=": got == value, "!=": got != value, "=~": re.fullmatch(value, got) is not None}[op]


def shipped_bound(alertname: str) -> dict:
    """Fault to notification with the shipped intervals, worst case once the condition holds: the
    alert's `for`, one scrape and one evaluation interval, and its route's group_wait."""
    rule = alert_rule(alertname)
    glob = load_yaml(PROMETHEUS_CONFIG)["global"]
    route = first_route({"alertname": alertname, **rule["labels"]})
    parts = {"for": seconds(rule["for"]), "scrape": seconds(glob["scrape_interval"]),
             "evaluation": seconds(glob["evaluation_interval"]), "group_wait": seconds(route["group_wait"])}
    return {**parts, "total": sum(parts.values()), "receiver": route["receiver"]}
