"""Prometheus configurations derived from the shipped ones (monitors/: prometheus.yml, recording.yml,
alerts.yml), changing only targets, paths and, when a caller asks, timings: the scrape and evaluation
intervals and the `for` of named alerts (with their 1m range windows). A drill's Prometheus
(controlplane/drills/prometheus.py), the benchmarks and the end-to-end tests all build theirs here, so
each evaluates the rules an installation ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

MONITORS = (Path(__file__).resolve().parent / "shipped").resolve()  # monitors/ in a checkout
ALERTS = MONITORS / "alerts.yml"
RECORDING = MONITORS / "recording.yml"
PROMETHEUS_CONFIG = MONITORS / "prometheus.yml"
ALERTMANAGER_CONFIG = MONITORS / "alertmanager.yml"
MIN_WINDOW = 2  # seconds: the shortest range window a shortened alert's 1m windows become


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@dataclass(frozen=True)
class Timings:
    """Timings changed from the shipped ones (None: as shipped). `shortened`: alert -> its `for` (and
    its 1m range windows)."""

    scrape: str | None = None
    evaluation: str | None = None
    group_wait: str | None = None       # Alertmanager: on every route that sets it, and the root
    group_interval: str | None = None   # likewise
    deadman_repeat: str | None = None
    shortened: dict[str, str] = field(default_factory=dict)


SHIPPED = Timings()


def alert_rule(alertname: str) -> dict | None:
    """The shipped rule of that alert, or None."""
    return next((r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if r.get("alert") == alertname), None)


def alert_names() -> list[str]:
    return [r["alert"] for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    unit = "ms" if duration.endswith("ms") else duration[-1]
    return float(duration[: -len(unit)]) * units[unit]


def rule_files(directory: Path, shortened: dict[str, str]) -> list[str]:
    """The shipped recording and alert rules written to `directory` (the `shortened` alerts' `for` and
    1m windows changed, to MIN_WINDOW at least: a range needs two samples); their paths."""
    alerts = load_yaml(ALERTS)
    found = set()
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in shortened:
                rule["for"] = shortened[rule["alert"]]
                window = shortened[rule["alert"]] if seconds(shortened[rule["alert"]]) >= MIN_WINDOW else f"{MIN_WINDOW}s"
                rule["expr"] = rule["expr"].replace("[1m]", f"[{window}]")
                found.add(rule["alert"])
    if found != set(shortened):
        raise ValueError(f"no shipped alert named {', '.join(sorted(set(shortened) - found))}")
    (directory / "alerts.yml").write_text(yaml.safe_dump(alerts, sort_keys=False))
    (directory / "recording.yml").write_text(RECORDING.read_text())
    return [str(directory / "recording.yml"), str(directory / "alerts.yml")]


def prometheus_config(files: list[str], targets: dict[str, str], am_port: int | None, timings: Timings = SHIPPED,
                      token_file: Path | None = None) -> dict:
    """The shipped prometheus.yml scraping `targets` ({job: host:port}), alerting to `am_port` (None: to
    no Alertmanager), sending the metrics token in `token_file` when given."""
    cfg = shipped_config(files, None if am_port is None else f"127.0.0.1:{am_port}", timings)
    for sc in cfg["scrape_configs"]:
        sc["static_configs"] = [{"targets": [targets[sc["job_name"]]]}]
        if token_file is not None:
            sc["authorization"] = {"credentials_file": str(token_file)}
    return cfg


def shipped_config(files: list[str], alertmanager: str | None, timings: Timings = SHIPPED) -> dict:
    """The shipped prometheus.yml with the rule files at `files`, alerting to `alertmanager` (host:port; None:
    to no Alertmanager), its timings changed as `timings` says; its scrape jobs as shipped."""
    cfg = load_yaml(PROMETHEUS_CONFIG)
    if timings.scrape:
        cfg["global"].update(scrape_interval=timings.scrape, scrape_timeout=timings.scrape)
    if timings.evaluation:
        cfg["global"]["evaluation_interval"] = timings.evaluation
    if {f.rsplit("/", 1)[-1] for f in files} != set(cfg["rule_files"]):
        raise ValueError(f"rule files {files} are not the shipped {cfg['rule_files']}")
    cfg["rule_files"] = files
    if alertmanager is None:
        cfg.pop("alerting", None)
    else:
        cfg["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    return cfg
