"""monitors/: the rules pass promtool's checks and their unit tests, every alert is complete and
tested (pending and firing), the Prometheus and Alertmanager examples are valid and route every
alert where it belongs, and the dashboard's queries parse."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .helpers import (
    ALERT_TESTS,
    ALERTMANAGER_CONFIG,
    ALERTS,
    DASHBOARD,
    FLEET_JOBS,
    JOBS,
    MONITORS,
    PROMETHEUS_CONFIG,
    RECORDING,
    RUNBOOK_BASE_URL,
    SEVERITIES,
    alert_rules,
    dashboard_queries,
    load_yaml,
    metric_names,
    program,
    recording_rules,
    rule_expressions,
    run,
    selectors,
)

DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
OPS_WEBHOOK = "http://127.0.0.1:8001/alerts/webhook"


# --------------------------------------------------------------------------------- promtool

def test_promtool_check_rules():
    r = run(program("promtool"), "check", "rules", RECORDING, ALERTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_test_rules():
    """Every alert's pending and firing case (and the stays-quiet cases) in monitors/alerts.test.yml."""
    r = run(program("promtool"), "test", "rules", ALERT_TESTS.name, cwd=MONITORS)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_check_config_of_the_prometheus_example():
    """prometheus.yml is valid and its rule files, relative to it, resolve to the rules here."""
    cfg = load_yaml(PROMETHEUS_CONFIG)
    assert sorted(MONITORS / f for f in cfg["rule_files"]) == sorted([RECORDING, ALERTS])
    assert {s["job_name"] for s in cfg["scrape_configs"]} == JOBS
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    r = run(program("promtool"), "check", "config", PROMETHEUS_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout


def test_amtool_check_config_of_the_alertmanager_example():
    r = run(program("amtool"), "check-config", ALERTMANAGER_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr


def _routes_to(labels: dict) -> set[str]:
    r = run(program("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
            *(f"{k}={v}" for k, v in labels.items()))
    assert r.returncode == 0, r.stdout + r.stderr
    return {name.strip() for name in r.stdout.strip().split(",") if name.strip()}


def test_alertmanager_routes_every_page_to_a_person_and_the_rest_to_the_control_plane_or_its_team():
    """amtool resolves each alert's labels through the routing tree: every page reaches the person
    on call (a receiver outside the control plane) and is recorded by the control plane's receiver,
    tickets are recorded there, LowStock also reaches purchasing, and Watchdog goes to the dead-man
    receiver alone."""
    expected = {"LowStock": {"purchasing", "erpctl-console"}, "Watchdog": {"deadman"}}
    for rule in alert_rules():
        labels = {"alertname": rule["alert"], **rule["labels"]}
        default = {"oncall", "erpctl-oncall"} if rule["labels"]["severity"] == "page" else {"erpctl-console"}
        assert _routes_to(labels) == expected.get(rule["alert"], default), rule["alert"]


def test_the_person_and_the_dead_man_receivers_are_outside_the_control_plane():
    cfg = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {r["name"]: r for r in cfg["receivers"]}
    for name, resolved in (("oncall", True), ("deadman", False)):
        (hook,) = receivers[name]["webhook_configs"]
        assert hook["url"].startswith("https://") and ":8001" not in hook["url"], name
        assert hook["send_resolved"] is resolved, name
    (deadman,) = [r for r in cfg["route"]["routes"] if r["receiver"] == "deadman"]
    assert deadman["matchers"] == ['alertname="Watchdog"'] and not deadman.get("continue")
    assert deadman["repeat_interval"] == "1m"
    (page,) = [r for r in cfg["route"]["routes"] if r["receiver"] == "oncall"]
    assert page["matchers"] == ['severity="page"'] and page["continue"] is True
    targets = " ".join(m for rule in cfg["inhibit_rules"] for m in rule["target_matchers"])
    assert "Watchdog" not in targets and "ControlPlaneDown" not in targets


def test_alertmanager_receivers_post_to_the_ops_port_with_the_data_directory_token():
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    cfg = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {r["name"]: r for r in cfg["receivers"]}
    for name in ("erpctl-oncall", "erpctl-console"):
        (hook,) = receivers[name]["webhook_configs"]
        assert hook["url"] == OPS_WEBHOOK
        assert hook["send_resolved"] is True
        auth = hook["http_config"]["authorization"]
        assert auth["type"] == "Bearer" and auth["credentials_file"].endswith("/" + WEBHOOK_TOKEN_FILE)
    route = cfg["route"]
    assert route["receiver"] == "erpctl-console"
    for key in ("group_by", "group_wait", "group_interval", "repeat_interval"):
        assert key in route, key


# ------------------------------------------------------------------------------ alert shape

def test_every_alert_is_complete():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    required = {"ErpDown", "ErpNotReady", "ErpHighErrorRate", "ErpHighLatencyP99", "ErpProbeFailing",
                "BackupMissing", "BackupTooOld", "BackupVerificationFailed", "RestoreTestOverdue",
                "DiskPredictedFull", "InvariantViolations", "UpgradeStuck", "LowStock", "ControlPlaneDown"}
    assert required <= set(names), required - set(names)
    for r in rules:
        name = r["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert DURATION.match(str(r.get("for", ""))), f"{name}: for: {r.get('for')!r}"
        labels, ann = r.get("labels", {}), r.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, f"{name}: severity {labels.get('severity')!r}"
        assert labels.get("team"), f"{name}: no team label"
        assert set(labels) <= {"severity", "team"}, f"{name}: unexpected labels {set(labels)}"
        assert ann.get("summary", "").strip(), f"{name}: no summary"
        assert "{{" in ann.get("description", ""), f"{name}: the description names no value or label"
        assert ann.get("runbook_url") == f"{RUNBOOK_BASE_URL}{name}.md", f"{name}: runbook_url"
    by_name = {r["alert"]: r for r in rules}
    assert by_name["LowStock"]["labels"]["team"] == "purchasing"
    assert by_name["ErpDown"]["labels"]["severity"] == "page"
    assert "predict_linear(erpctl_data_dir_filesystem_free_bytes" in by_name["DiskPredictedFull"]["expr"]
    assert "4 * 3600" in by_name["DiskPredictedFull"]["expr"]
    assert "histogram_quantile" in next(r["expr"] for r in recording_rules()
                                        if r["record"] == "job:erp_http_request_duration_seconds:p99_rate5m")


def test_recording_rules_are_used_and_alerts_use_only_defined_ones():
    recorded = {r["record"] for r in recording_rules()}
    assert all(":" in name for name in recorded)
    used = set()
    for _, expr in rule_expressions() + dashboard_queries(json.loads(DASHBOARD.read_text())):
        used |= {n for n in metric_names(expr) if ":" in n}
    assert used <= recorded, f"not recorded: {used - recorded}"
    assert recorded <= used, f"recorded but used by no alert and no panel: {recorded - used}"


def _alert_cases() -> dict[str, dict]:
    """Per alert: firing cases [(group, time)], empty cases {(group, time)}, pending (group, time)."""
    cases: dict[str, dict] = {}
    doc = load_yaml(ALERT_TESTS)
    for gi, group in enumerate(doc["tests"]):
        for t in group.get("alert_rule_test", []):
            c = cases.setdefault(t["alertname"], {"firing": [], "empty": set(), "pending": set()})
            if t["exp_alerts"]:
                c["firing"].append((gi, t))
            else:
                c["empty"].add((gi, t["eval_time"]))
        for t in group.get("promql_expr_test", []):
            sel = selectors(t["expr"])
            if len(sel) != 1 or sel[0].metric != "ALERTS":
                continue
            names = [m.value for m in sel[0].matchers if m.label == "alertname" and m.op == "="]
            for sample in t.get("exp_samples", []):
                if 'alertstate="pending"' in sample["labels"].replace(" ", "") and names:
                    cases.setdefault(names[0], {"firing": [], "empty": set(), "pending": set()})
                    cases[names[0]]["pending"].add((gi, t["eval_time"]))
    return cases


def test_every_alert_has_a_pending_and_a_firing_case():
    """Pending: in one test group, at one time, no alert and ALERTS{alertstate="pending"} (the
    condition holds, its `for` has not elapsed). Firing: the exact labels and all the annotations."""
    cases = _alert_cases()
    for rule in alert_rules():
        name = rule["alert"]
        c = cases.get(name)
        assert c, f"{name} has no case in {ALERT_TESTS.name}"
        assert c["pending"] & c["empty"], f"{name}: no pending case (no alert, ALERTS pending, same group and time)"
        assert c["firing"], f"{name}: no firing case"
        for _, t in c["firing"]:
            for exp in t["exp_alerts"]:
                assert {"alertname": name, **rule["labels"]}.items() <= exp["exp_labels"].items(), name
                assert set(exp["exp_annotations"]) == set(rule["annotations"]), name


# -------------------------------------------------------------------------------- dashboard

def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource():
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 30
    panels = d["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    var = {v["name"]: v for v in d["templating"]["list"]}
    assert var["datasource"]["type"] == "datasource" and var["datasource"]["query"] == "prometheus"
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], p["title"]
    assert len(dashboard_queries(d)) >= 30


def test_dashboard_queries_parse(tmp_path):
    """promtool parses every panel query (as the expression of a throwaway recording rule)."""
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__(rate_)?interval", "5m", q)}
        for i, (_, q) in enumerate(queries)]}]}
    f = tmp_path / "dashboard-queries.yml"
    f.write_text(yaml.safe_dump(rules))
    r = run(program("promtool"), "check", "rules", f)
    assert r.returncode == 0, r.stdout + r.stderr


def test_queries_name_the_jobs_of_the_scrape_configuration():
    for where, expr in rule_expressions() + dashboard_queries(json.loads(DASHBOARD.read_text())):
        for s in selectors(expr):
            for m in s.matchers:
                if m.label == "job" and m.op == "=":
                    assert m.value in JOBS | FLEET_JOBS, f"{where}: job {m.value!r}"


@pytest.mark.parametrize("expr, names", [
    ('sum by (job, le) (rate(a_bucket{route!~"/metrics|x{1}"}[5m] offset 1h))', {"a_bucket"}),
    ("up{job=\"erp\"} == 0 unless on() (b == 1)", {"up", "b"}),
    ("time() - c_seconds > 26 * 3600 and c_seconds != 0", {"c_seconds"}),
    ('histogram_quantile(0.99, sum(rate({__name__="d_bucket", x="y"}[$__rate_interval])) by (le))', {"d_bucket"}),
    ("predict_linear(e_bytes[1h], 4 * 3600) < 0 and job:f:ratio < 0.5e0", {"e_bytes", "job:f:ratio"}),
    ('a / on(instance) group_left(version) g_info{version=~"1.*"}', {"a", "g_info"}),
])
def test_metric_name_extraction(expr, names):
    assert {s.metric for s in selectors(expr)} == names
