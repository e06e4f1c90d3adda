"""Every metric that a rule expression or a dashboard query names is exposed by a running ERP and
control plane (`erpctl up`), with the labels the queries select on."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Up
from .helpers import DASHBOARD, dashboard_queries, rule_expressions, selectors

# Labels that Prometheus adds (target labels) or that selectors may use freely.
TARGET_LABELS = {"job", "instance", "__name__", "role"}  # role: a fleet's targets
# Labels with a fixed set of values, which queries must spell as the exporters do.
ENUMERATED = {"probe", "level", "severity"}
PREFIX_TO_JOB = {"erp_": "erp", "erpctl_": "erpctl"}
TOKEN = "a metrics token"
PROBES = {"readyz", "business", "db_integrity", "backup_freshness", "disk_headroom"}


def exposition(text: str) -> dict[str, list[dict]]:
    """Metric name -> the label sets of its samples. A family declared without samples (a labelled
    metric with no child yet) counts as exposed, with its sample names derived from its type."""
    out: dict[str, list[dict]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.type == "counter":
            names = [fam.name + "_total", fam.name + "_created"]
        elif fam.type in ("histogram", "gaugehistogram"):
            names = [fam.name + s for s in ("_bucket", "_sum", "_count", "_created")]
        elif fam.type == "summary":
            names = [fam.name, fam.name + "_sum", fam.name + "_count", fam.name + "_created"]
        else:
            names = [fam.name]
        for n in names:
            out.setdefault(n, [])
        for s in fam.samples:
            out.setdefault(s.name, []).append(dict(s.labels))
    return out


def used_metrics() -> dict[str, list[tuple[str, list]]]:
    """Exporter metric name -> [(where, matchers)] over every rule and dashboard query (recorded
    series, whose names have colons, are recording.yml's business: test_rules checks them)."""
    used = defaultdict(list)
    queries = rule_expressions() + [(f"panel {t!r}", q) for t, q in dashboard_queries(json.loads(DASHBOARD.read_text()))]
    for where, expr in queries:
        for s in selectors(expr):
            if ":" not in s.metric:
                used[s.metric].append((where, s.matchers))
    return used


def _scrape(url: str) -> str:
    r = requests.get(url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, f"{url}: HTTP {r.status_code}"
    return r.text


@pytest.fixture
def up_with_token(tmp_path):
    """erpctl up with a metrics token: the ERP's /metrics then carries the business figures the dashboard
    shows (without one it leaves them out)."""
    up = Up(tmp_path / "data", tmp_path / "erpctl-up.log", ERPCTL_METRICS_TOKEN=TOKEN)
    yield up
    assert up.process.stop() == 0, up.process.log[-5000:]


def test_every_metric_in_rules_and_dashboard_is_exposed(up_with_token):
    erp, ops = up_with_token.erp_url, up_with_token.ops_url
    # Traffic, so that the request families have children (and labels) to compare with.
    for path in ("/readyz", "/healthz", "/api/v1/openapi.json", "/no-such-page", "/api/v1/sales-orders"):
        requests.get(erp + path, timeout=10)

    used = used_metrics()
    # Probes run at start, in the background: wait (a bounded time) until every probe has run once.
    deadline = time.monotonic() + 60
    while True:
        exposed = {"erp": exposition(_scrape(erp + "/metrics")), "erpctl": exposition(_scrape(ops + "/metrics"))}
        runs = {s["probe"] for s in exposed["erpctl"].get("erpctl_probe_last_run_timestamp_seconds", [])}
        if runs >= PROBES or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    problems = []
    for name, uses in sorted(used.items()):
        where = sorted({w for w, _ in uses})
        if name == "up":  # Prometheus' own, per scrape target
            continue
        if name.startswith("haproxy_"):  # HAProxy's exporter: tests/controlplane/remote/test_site_monitoring.py
            continue
        job = next((j for prefix, j in PREFIX_TO_JOB.items() if name.startswith(prefix)), None)
        if job is None:
            problems.append(f"{name}: neither an erp_ nor an erpctl_ metric (used in {where})")
            continue
        samples = exposed[job].get(name)
        if samples is None:
            problems.append(f"{name}: not exposed by the {job} /metrics (used in {where})")
            continue
        if not samples:
            continue  # declared, no series yet: nothing to compare labels with
        labels = set().union(*(s.keys() for s in samples))
        for w, matchers in uses:
            for m in matchers:
                if m.label in TARGET_LABELS:
                    continue
                if m.label not in labels:
                    problems.append(f"{w}: {name} has no label {m.label!r} (it has {sorted(labels)})")
                elif m.label in ENUMERATED and m.op in ("=", "=~"):
                    values = {s.get(m.label) for s in samples}
                    wanted = m.value.split("|") if m.op == "=~" else [m.value]
                    missing = [v for v in wanted if v not in values]
                    if missing:
                        problems.append(f"{w}: {name}{{{m.label}}} has no value {missing} (it has {sorted(values)})")
    assert not problems, "\n".join(problems)


def test_exposition_parser_derives_sample_names():
    text = ("# HELP a_total x\n# TYPE a_total counter\n"
            "# HELP h x\n# TYPE h histogram\n"
            "# HELP g x\n# TYPE g gauge\ng{probe=\"readyz\"} 1\n")
    e = exposition(text)
    assert e["a_total"] == [] and e["h_bucket"] == [] and e["h_count"] == []
    assert e["g"] == [{"probe": "readyz"}]
