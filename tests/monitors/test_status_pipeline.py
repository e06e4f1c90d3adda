"""`erpctl status` says when Prometheus or Alertmanager cannot be reached: real ones started, then
one SIGKILLed; their URLs from a flag, the environment or erpctl.toml (flag > env > erpctl.toml >
default), a configured one that does not answer is critical, the default one never flagged."""

from __future__ import annotations

import json
import signal

import pytest

from tests.controlplane.cli_helpers import erpctl, free_ports

from .conftest import Process, wait_http
from .helpers import program

CRITICAL = 17


@pytest.fixture
def pipeline(tmp_path):
    prom_port, am_port, dead_port = free_ports(3)
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    (tmp_path / "alertmanager.yml").write_text("route: {receiver: nobody}\nreceivers: [{name: nobody}]\n")
    prom = Process([program("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                   tmp_path / "prometheus.log")
    am = Process([program("prometheus-alertmanager"), f"--config.file={tmp_path / 'alertmanager.yml'}",
                  f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                  "--cluster.listen-address="], tmp_path / "alertmanager.log")
    urls = {"prometheus": f"http://127.0.0.1:{prom_port}", "alertmanager": f"http://127.0.0.1:{am_port}",
            "dead": f"http://127.0.0.1:{dead_port}"}
    try:
        wait_http(urls["prometheus"] + "/-/ready", prom, timeout=30)
        wait_http(urls["alertmanager"] + "/-/ready", am, timeout=30)
        yield urls, am
    finally:
        prom.stop()
        am.stop()


def status(data_dir, *args, **env):
    r = erpctl("--json", "status", "--data-dir", data_dir, "--timeout", "2", *args, **env)
    report = json.loads(r.stdout)
    unreachable = {a["what"]: a for a in report["attention"] if a["what"].endswith(" unreachable")}
    return r, report["alerting"], unreachable


def test_status_names_an_unreachable_prometheus_or_alertmanager(tmp_path, pipeline):
    urls, am = pipeline
    data = tmp_path / "data"
    data.mkdir()
    flags = ("--prometheus-url", urls["prometheus"], "--alertmanager-url", urls["alertmanager"])

    _, alerting, unreachable = status(data, *flags)
    assert alerting["prometheus"] == {"url": urls["prometheus"], "source": "flag --prometheus-url", "configured": True, "ok": True,
                                      "status": 200}
    assert alerting["alertmanager"]["ok"] and not unreachable

    am.stop(signal.SIGKILL)
    r, alerting, unreachable = status(data, "--prometheus-url", urls["prometheus"],
                                      ERPCTL_ALERTMANAGER_URL=urls["alertmanager"])
    assert r.returncode == CRITICAL
    assert alerting["alertmanager"]["source"] == "environment ERPCTL_ALERTMANAGER_URL" and not alerting["alertmanager"]["ok"]
    (item,) = unreachable.values()
    assert item["what"] == "alertmanager unreachable" and item["level"] == "critical"
    assert urls["alertmanager"] in item["detail"] and "ERPCTL_ALERTMANAGER_URL" in item["detail"]
    assert item["runbook_url"].endswith("/Watchdog.md")
    human = erpctl("status", "--data-dir", data, "--timeout", "2", *flags)
    assert f"alertmanager {urls['alertmanager']} UNREACHABLE" in human.stdout
    assert f"prometheus {urls['prometheus']} ok" in human.stdout

    # erpctl.toml names a Prometheus that does not answer; a flag still wins over it.
    (data / "erpctl.toml").write_text(f'[monitoring]\nprometheus_url = "{urls["dead"]}"\n')
    _, alerting, unreachable = status(data)
    assert alerting["prometheus"]["source"] == "erpctl.toml [monitoring] prometheus_url" and "prometheus unreachable" in unreachable
    _, alerting, unreachable = status(data, "--prometheus-url", urls["prometheus"])
    assert alerting["prometheus"]["ok"] and "prometheus unreachable" not in unreachable

    # Nothing set: the defaults are shown, never flagged (an installation may run without Prometheus).
    (data / "erpctl.toml").unlink()
    _, alerting, unreachable = status(data)
    assert alerting["alertmanager"]["source"] == "default" and not unreachable
