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

import time
from dataclasses import dataclass

import pytest
import requests
import yaml

from bench.alerting_stack import Receiver, alertmanager_config, shipped_bound
from controlplane.monitoring.prometheus_config import Timings, prometheus_config, rule_files
from tests.controlplane.cli_helpers import free_ports

from .conftest import Process, wait_http
from .helpers import program

SCRAPE_SECONDS = 1
EVAL_SECONDS = 1
GROUP_WAIT_SECONDS = 1
GROUP_INTERVAL_SECONDS = 1
DEADMAN_REPEAT_SECONDS = 2
RESEND_DELAY_SECONDS = 1
FOR_SECONDS = 5
SLACK_SECONDS = 5  # delivery: Prometheus -> Alertmanager -> webhook, and the phase of the timers
PAGE_BOUND = FOR_SECONDS + SCRAPE_SECONDS + EVAL_SECONDS + GROUP_WAIT_SECONDS + SLACK_SECONDS


TEST_TIMINGS = dict(scrape=f"{SCRAPE_SECONDS}s", evaluation=f"{EVAL_SECONDS}s", group_wait=f"{GROUP_WAIT_SECONDS}s",
                    group_interval=f"{GROUP_INTERVAL_SECONDS}s", deadman_repeat=f"{DEADMAN_REPEAT_SECONDS}s")


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
    timings = Timings(**TEST_TIMINGS, shortened={name: f"{FOR_SECONDS}s" for name in (*shortened, "Watchdog")})
    files = rule_files(rules_dir, timings.shortened)
    prom_cfg, am_cfg = tmp_path / "prometheus.yml", tmp_path / "alertmanager.yml"
    prom_cfg.write_text(yaml.safe_dump(prometheus_config(files, targets, am_port, timings)))
    oncall, deadman = Receiver("oncall"), Receiver("deadman")
    am_cfg.write_text(yaml.safe_dump(alertmanager_config(ops_port, token_file, oncall.url, deadman.url, timings)))
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
    one evaluation interval, and its route's group_wait (bench/alerting_stack.py)."""
    return shipped_bound(alertname)["total"]
