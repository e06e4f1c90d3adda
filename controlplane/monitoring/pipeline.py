"""Whether the alerting pipeline answers: Prometheus (evaluates the rules) and Alertmanager (routes
the pages), as `erpctl status` checks them. While either is down no alert reaches anyone; only the
dead-man receiver, missing the Watchdog alert, notices.

Their URLs are settings, resolved in one place (`urls`), flag > environment > erpctl.toml > default:

    --prometheus-url    ERPCTL_PROMETHEUS_URL    [monitoring] prometheus_url    http://127.0.0.1:9090
    --alertmanager-url  ERPCTL_ALERTMANAGER_URL  [monitoring] alertmanager_url  http://127.0.0.1:9093

A URL set by a flag, the environment or erpctl.toml names a pipeline that must answer: `erpctl
status` flags it critical when it does not. At the default, status shows whether something answers
there and flags nothing (an installation may run without Prometheus).
"""

from __future__ import annotations

from dataclasses import dataclass

from .probes import ProbeFailed, http_json

PARTS = {  # part: (flag, environment variable, erpctl.toml key in [monitoring], default)
    "prometheus": ("--prometheus-url", "ERPCTL_PROMETHEUS_URL", "prometheus_url", "http://127.0.0.1:9090"),
    "alertmanager": ("--alertmanager-url", "ERPCTL_ALERTMANAGER_URL", "alertmanager_url", "http://127.0.0.1:9093"),
}


@dataclass(frozen=True)
class Endpoint:
    part: str
    url: str
    source: str  # flag | env | erpctl.toml | default

    @property
    def configured(self) -> bool:
        return self.source != "default"


def urls(flags: dict, settings: dict, environ) -> list[Endpoint]:
    """Each part's URL and where it came from: flags {part: url or None}, settings = erpctl.toml."""
    table = settings.get("monitoring") or {}
    out = []
    for part, (_flag, env, key, default) in PARTS.items():
        for source, value in (("flag", flags.get(part)), ("env", environ.get(env)), ("erpctl.toml", table.get(key))):
            if value:
                out.append(Endpoint(part, str(value).rstrip("/"), source))
                break
        else:
            out.append(Endpoint(part, default, "default"))
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
    flag, env, key, _ = PARTS[part]
    return (f"start {part} (the Watchdog runbook), or point erpctl at it: {flag}, {env} or "
            f"[monitoring] {key} in erpctl.toml")
