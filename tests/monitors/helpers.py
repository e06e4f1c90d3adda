"""What the monitors/ and runbooks/ tests share: the files, the rules, PromQL metric names, runbooks
parsed by the runbook engine's own parser (controlplane/runbook/parse.py), and external programs
(promtool, Prometheus, Alertmanager)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


from bench.alerting_stack import (ALERTMANAGER_CONFIG, ALERTS, MONITORS, PROMETHEUS_CONFIG,  # noqa: F401
                                  RECORDING, ROOT, load_yaml)
from controlplane.runbook.parse import parse_runbook  # the product's parser
from controlplane.runbook.parse import runbook_paths as _runbook_paths
from tests.conftest import need

RUNBOOKS = ROOT / "runbooks"
ALERT_TESTS = MONITORS / "alerts.test.yml"
DASHBOARD = MONITORS / "grafana" / "erp-overview.json"

# runbook_url of every alert: this base, then <AlertName>.md, which is runbooks/<AlertName>.md.
RUNBOOK_BASE_URL = "https://erp-controlplane.dev/runbooks/"
SEVERITIES = {"page", "ticket", "info"}
JOBS = {"erp", "erpctl"}
# The jobs of a fleet's Prometheus (`erpctl fleet prometheus-config`, controlplane/remote/scrape.py) beside them.
FLEET_JOBS = {"erp_app", "erpctl", "haproxy"}

# Debian's packages: prometheus (prometheus, promtool), prometheus-alertmanager
# (prometheus-alertmanager, amtool).
PROGRAMS = {"promtool": "prometheus", "prometheus": "prometheus", "amtool": "prometheus-alertmanager",
            "prometheus-alertmanager": "prometheus-alertmanager"}


def program(name: str) -> str:
    """The path of an external program, or skip (fail under ERPCTL_REQUIRE_INTEGRATION=1)."""
    found = shutil.which(name)
    if not found:
        need(f"{name} is not installed (Debian: apt-get install --no-install-recommends {PROGRAMS[name]})")
    return found


def run(*args, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


# ---------------------------------------------------------------------------------------- rules

def alert_rules() -> list[dict]:
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]


def recording_rules() -> list[dict]:
    return [r for g in load_yaml(RECORDING)["groups"] for r in g["rules"]]


def rule_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every recording and alerting rule."""
    out = [(f"recording rule {r['record']}", r["expr"]) for r in recording_rules()]
    out += [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    return out


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            out.append((f"variable {var['name']}", q.get("query") if isinstance(q, dict) else q))
    return out


def runbook_file(url: str) -> Path | None:
    """The file a runbook_url names: <base>/<Name>.md -> runbooks/<Name>.md (None if not of that form)."""
    if not url.startswith(RUNBOOK_BASE_URL):
        return None
    name = url[len(RUNBOOK_BASE_URL):]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*\.md", name):
        return None
    return RUNBOOKS / name


# --------------------------------------------------------------------------------------- PromQL

@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Selector:
    metric: str
    matchers: list[Matcher] = field(default_factory=list)


KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_BRACES = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\x00(\d+)\x00")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z]+", re.IGNORECASE)
_AT = re.compile(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\$?[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def _unquote(s: str) -> str:
    if s.startswith("`"):
        return s[1:-1]
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL expression (or a Grafana query): the metric name and the
    label matchers. Strings are set aside first, so nothing inside them is taken for a name."""
    strings: list[str] = []

    def keep(m):
        strings.append(_unquote(m.group(0)))
        return f"\x00{len(strings) - 1}\x00"

    text = _GRAFANA_VAR.sub("1", _STRING.sub(keep, expr))
    found: list[Selector] = []

    def braces(m):
        name = m.group(1) or ""
        matchers = [Matcher(lbl, op, strings[int(i)]) for lbl, op, i in _MATCHER.findall(m.group(2))]
        if name.lower() in KEYWORDS:  # `sum by (x) {..}` cannot happen; `and {__name__=..}` can
            found_name, keep_name = "", name + " "
        else:
            found_name, keep_name = name, ""
        for mt in matchers:
            if mt.label == "__name__" and mt.op == "=":
                found_name = mt.value
        if found_name:
            found.append(Selector(found_name, [mt for mt in matchers if mt.label != "__name__"]))
        return keep_name + " __selector__ "

    text = _BRACES.sub(braces, text)
    text = _PLACEHOLDER.sub(" ", text)
    for rx in (_RANGE, _GROUPING, _OFFSET, _AT):
        text = rx.sub(" ", text)
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS or name == "__selector__":
            continue
        found.append(Selector(name))
    return found


def metric_names(expr: str) -> set[str]:
    return {s.metric for s in selectors(expr)}


# ------------------------------------------------------------------------------------- runbooks

def runbook_paths() -> list[Path]:
    return _runbook_paths(RUNBOOKS)
