"""Whether the alerting pipeline answers: Prometheus (evaluates the rules) and Alertmanager (routes
the pages), as `erpctl status` checks them. While either is down no alert reaches anyone; only the
dead-man receiver, missing the Watchdog alert, notices.

Their URLs are the installation's settings prometheus_url and alertmanager_url (flag > environment >
erpctl.toml > default):

    --prometheus-url    ERPCTL_PROMETHEUS_URL    [monitoring] prometheus_url    http://127.0.0.1:9090
    --alertmanager-url  ERPCTL_ALERTMANAGER_URL  [monitoring] alertmanager_url  http://127.0.0.1:9093

A URL set by a flag, the environment or erpctl.toml names a pipeline that must answer: `erpctl
status` flags it critical when it does not. At the default, status shows whether something answers
there and flags nothing (an installation may run without Prometheus).
"""

from __future__ import annotations

from dataclasses import dataclass

from .probes import ProbeFailed, http_json

PARTS = {  # part: (setting, flag, environment variable, erpctl.toml key in [monitoring])
    "prometheus": ("prometheus_url", "--prometheus-url", "ERPCTL_PROMETHEUS_URL", "prometheus_url"),
    "alertmanager": ("alertmanager_url", "--alertmanager-url", "ERPCTL_ALERTMANAGER_URL", "alertmanager_url"),
}


@dataclass(frozen=True)
class Endpoint:
    part: str
    url: str
    source: str  # where the installation found it ("default" when nothing set it)

    @property
    def configured(self) -> bool:
        return self.source != "default"


def urls(inst) -> list[Endpoint]:
    """Each part's URL as the installation resolves it, and where it came from."""
    out = []
    for part, (setting, *_rest) in PARTS.items():
        found = inst.resolve(setting)
        out.append(Endpoint(part, str(found.value).rstrip("/"), found.source))
    return out


def check(endpoint: Endpoint, timeout: float) -> dict:
    """GET <url>/-/healthy (both answer it): {"url", "source", "configured", "ok", and "error" or "status"}."""
    row = {"url": endpoint.url, "source": endpoint.source, "configured": endpoint.configured}
    try:
        status, _ = http_json("GET", endpoint.url + "/-/healthy", timeout=timeout)
    except ProbeFailed as exc:
        return {**row, "ok": False, "error": str(exc)}
    return {**row, "ok": status == 200, "status": status}


def fix(part: str) -> str:
    _setting, flag, env, key = PARTS[part]
    return (f"start {part} (the Watchdog runbook), or point erpctl at it: {flag}, {env} or "
            f"[monitoring] {key} in erpctl.toml")
