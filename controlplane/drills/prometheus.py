"""A drill's own Prometheus (Debian's `prometheus`, when on PATH): its own free port and scratch storage in
the sandbox's directory, the SHIPPED recording and alert rules (monitors/, through
controlplane/monitoring/prometheus_config.py), scraping the sandbox's ERP and ops ports with the sandbox's
metrics token. Detection is the scenario's expected alert reaching `firing` in /api/v1/alerts.

Timings: scrape and rule evaluation every 0.5 s (the shipped 15 s intervals would only add noise to what
a drill measures); the alert's `for` as shipped unless the drill shortens it (--alert-for), and the record
says so. The process is stopped by the drill's clean-up, which always runs (and, as a process standing in
the sandbox, by the sandbox's own clean-up of a killed drill).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from .. import config
from ..errors import DrillError
from ..monitoring.prometheus_config import Timings, alert_rule, prometheus_config, rule_files, seconds
from .sandbox import free_ports

PROGRAM = "prometheus"
INTERVAL = "500ms"  # scrape (its timeout the same) and evaluation: a restart taking longer is seen down
READY_TIMEOUT = 30.0


def available(program: str = PROGRAM) -> str | None:
    """The prometheus program (a name on PATH, or a path), or None."""
    return shutil.which(program)


def shipped_for(alertname: str) -> float:
    """The shipped `for` of that alert, in seconds (0 without one)."""
    rule = alert_rule(alertname)
    if rule is None:
        raise DrillError(f"no shipped alert named {alertname!r} (monitors/alerts.yml)",
                         fix="Name an alert of monitors/alerts.yml in the scenario's detect.alert.")
    return seconds(rule["for"]) if rule.get("for") else 0.0


@dataclass
class DrillPrometheus:
    root: Path                      # <sandbox>/prometheus: configuration, rules, token, storage
    alertname: str
    alert_for: float | None = None  # seconds; None: the shipped `for`
    program: str = PROGRAM          # the setting drill_prometheus
    port: int = 0
    proc: subprocess.Popen | None = None
    shipped: float = field(init=False, default=0.0)

    def __post_init__(self):
        self.shipped = shipped_for(self.alertname)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def shortened(self) -> bool:
        return self.alert_for is not None and self.alert_for != self.shipped

    @property
    def effective_for(self) -> float:
        return self.alert_for if self.alert_for is not None else self.shipped

    def start(self, erp_port: int, ops_port: int, token: str | None, cwd: Path) -> dict:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        shortened = {self.alertname: f"{self.alert_for:g}s"} if self.shortened else {}
        files = rule_files(self.root, shortened)
        token_file = None
        if token:
            token_file = self.root / "metrics.token"
            config.write_private(token_file, token + "\n")
        timings = Timings(scrape=INTERVAL, evaluation=INTERVAL, shortened=shortened)
        cfg = prometheus_config(files, {"erp": f"127.0.0.1:{erp_port}", "erpctl": f"127.0.0.1:{ops_port}"}, None,
                                timings, token_file)
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = open(self.root / "prometheus.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [available(self.program) or self.program, f"--config.file={self.root / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd, start_new_session=True)
        log.close()
        self._wait_ready()
        return {"url": self.url, "alert": self.alertname, "for_seconds": self.effective_for,
                "shipped_for_seconds": self.shipped, "for_shortened": self.shortened,
                "scrape_interval": INTERVAL, "evaluation_interval": INTERVAL}

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DrillError(f"the drill's Prometheus exited {self.proc.returncode}: {self.log()[-600:]}",
                                 fix="Run the drill with --keep and read prometheus/prometheus.log in its sandbox.")
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise DrillError(f"the drill's Prometheus was not ready within {READY_TIMEOUT:.0f} s",
                         fix="Run the drill with --keep and read prometheus/prometheus.log in its sandbox.")

    def log(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alert(self) -> dict | None:
        """The expected alert as /api/v1/alerts lists it (state pending or firing, activeAt), or None."""
        try:
            r = requests.get(self.url + "/api/v1/alerts", timeout=2)
            r.raise_for_status()
        except requests.RequestException:
            return None
        for a in r.json()["data"]["alerts"]:
            if a["labels"].get("alertname") == self.alertname:
                return a
        return None

    def history(self, since: float) -> dict[str, float]:
        """When Prometheus itself first evaluated the alert pending and firing since `since` (its ALERTS
        series: raw samples, each an evaluation's timestamp), {state: unix time}; a state it never reached
        is absent. Read from Prometheus's own record, so an alert that fired and resolved between two polls
        is not missed."""
        window = max(1, int(time.time() - since) + 2)
        try:
            r = requests.get(self.url + "/api/v1/query",
                             params={"query": f'ALERTS{{alertname="{self.alertname}"}}[{window}s]'}, timeout=2)
            r.raise_for_status()
        except requests.RequestException:
            return {}
        out: dict[str, float] = {}
        for series in r.json()["data"]["result"]:
            state = series["metric"].get("alertstate")
            times = [float(t) for t, _ in series["values"] if float(t) >= since]
            if state and times:
                out[state] = min(times + ([out[state]] if state in out else []))
        if "firing" in out:  # with no `for` an alert fires at its first evaluation, never listed pending
            out["pending"] = min(out.get("pending", out["firing"]), out["firing"])
        return out

    def targets_up(self) -> bool:
        """Both scrape targets scraped and up (the steady state the alert is evaluated against)."""
        try:
            r = requests.get(self.url + "/api/v1/targets", timeout=2)
            r.raise_for_status()
        except requests.RequestException:
            return False
        active = r.json()["data"]["activeTargets"]
        return len(active) == 2 and all(t["health"] == "up" for t in active)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
