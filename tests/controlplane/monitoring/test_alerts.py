"""The Alertmanager receiver: bearer token, firing and resolved alerts, runbooks, evidence."""

from __future__ import annotations

import pytest

from controlplane.console.app import create_app
from controlplane.evidence import EvidenceLog
from controlplane.monitoring import alerts, credentials

from .helpers import families, sample

STARTS = "2030-01-01T10:00:00.000Z"


def alert(name="ErpDown", status="firing", severity="page", fp=None, starts=STARTS, **annotations):
    return {"status": status, "labels": {"alertname": name, "severity": severity, "job": "erp"},
            "annotations": {"summary": f"{name} summary", "description": "what happened",
                            "runbook_url": f"https://erp-controlplane.dev/runbooks/{name}.md", **annotations},
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2030-01-01T10:05:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": fp or f"fp-{name}"}


def notification(*items, status="firing"):
    return {"version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0, "status": status,
            "receiver": "erpctl-oncall", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(items)}


@pytest.fixture
def console(tmp_path):
    token_file = credentials.ensure_webhook_token(tmp_path)
    app = create_app({}, data_dir=tmp_path)
    client = app.test_client()
    client.auth = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    return client


def test_the_token_file_is_private_and_kept(tmp_path):
    path = credentials.ensure_webhook_token(tmp_path)
    token = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and len(token.strip()) >= 40
    assert credentials.ensure_webhook_token(tmp_path).read_text() == token


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dXNlcjpwYXNz", "Bearer", "bearer  "])
def test_unauthenticated_posts_are_refused(console, tmp_path, header):
    headers = {"Authorization": header} if header else {}
    r = console.post("/alerts/webhook", json=notification(alert()), headers=headers)
    assert r.status_code == 401 and r.mimetype == "application/problem+json"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    assert alerts.active(tmp_path) == [] and EvidenceLog(tmp_path).records() == []


def test_without_a_token_file_every_post_is_refused(tmp_path):
    client = create_app({}, data_dir=tmp_path).test_client()
    assert client.post("/alerts/webhook", json=notification(alert()),
                       headers={"Authorization": "Bearer "}).status_code == 401


def test_firing_then_resolved(console, tmp_path):
    r = console.post("/alerts/webhook", json=notification(alert(), alert("BackupTooOld", severity="ticket")),
                     headers=console.auth)
    assert r.status_code == 200 and r.json["recorded"] == {"firing": 2, "resolved": 0, "ignored": 0}

    listed = console.get("/alerts").json
    assert [a["alertname"] for a in listed["active"]] == ["ErpDown", "BackupTooOld"]  # the page first
    down = listed["active"][0]
    assert down["severity"] == "page" and down["summary"] == "ErpDown summary"
    assert down["runbook_url"] == "https://erp-controlplane.dev/runbooks/ErpDown.md"
    assert down["startsAt"] == STARTS and down["fingerprint"] == "fp-ErpDown"

    fams = families(console.get("/metrics").get_data(as_text=True))
    assert sample(fams, "erpctl_alerts_firing", severity="page") == 1
    assert sample(fams, "erpctl_alerts_firing", severity="ticket") == 1

    r = console.post("/alerts/webhook", json=notification(alert(status="resolved"), status="resolved"),
                     headers=console.auth)
    assert r.json["recorded"]["resolved"] == 1
    listed = console.get("/alerts").json
    assert [a["alertname"] for a in listed["active"]] == ["BackupTooOld"]
    assert listed["recently_resolved"][0]["alertname"] == "ErpDown"
    assert listed["recently_resolved"][0]["resolved_at"]
    fams = families(console.get("/metrics").get_data(as_text=True))
    assert sample(fams, "erpctl_alerts_firing", severity="page") == 0

    # Each notification is evidence, and the chain verifies.
    log = EvidenceLog(tmp_path)
    records = log.records()
    assert [r["kind"] for r in records] == ["alert", "alert"]
    assert records[0]["actor"] == "alertmanager" and records[0]["data"]["alerts"][0]["alertname"] == "ErpDown"
    assert records[1]["data"]["alerts"][0]["status"] == "resolved"
    assert records[0]["data"]["alerts"][0]["runbook_url"].endswith("/runbooks/ErpDown.md")
    count, problems = log.verify()
    assert count == 2 and problems == []


def test_a_late_firing_after_the_resolve_is_ignored_a_new_one_counts(console, tmp_path):
    console.post("/alerts/webhook", json=notification(alert()), headers=console.auth)
    console.post("/alerts/webhook", json=notification(alert(status="resolved")), headers=console.auth)
    r = console.post("/alerts/webhook", json=notification(alert()), headers=console.auth)
    assert r.json["recorded"]["ignored"] == 1 and alerts.active(tmp_path) == []
    console.post("/alerts/webhook", json=notification(alert(starts="2030-01-01T11:00:00Z")), headers=console.auth)
    assert [a["alertname"] for a in alerts.active(tmp_path)] == ["ErpDown"]


def test_runbook_falls_back_to_the_alert_name(console, tmp_path):
    a = alert("ErpNotReady")
    del a["annotations"]["runbook_url"]
    console.post("/alerts/webhook", json=notification(a), headers=console.auth)
    listed = alerts.active(tmp_path)[0]
    assert listed["runbook_url"] == "runbooks/ErpNotReady.md"


@pytest.mark.parametrize("body", [{"alerts": "no"}, {"nothing": []}, {"alerts": [{"status": "odd", "labels": {}}]},
                                  {"alerts": [{"status": "firing", "labels": {"severity": "page"}}]}, [1, 2]])
def test_malformed_notifications_are_refused(console, tmp_path, body):
    r = console.post("/alerts/webhook", json=body, headers=console.auth)
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert alerts.active(tmp_path) == []


def test_not_json(console):
    r = console.post("/alerts/webhook", data="not json", headers={**console.auth, "Content-Type": "text/plain"})
    assert r.status_code == 422


def test_unknown_severities_count_as_other(console, tmp_path):
    console.post("/alerts/webhook", json=notification(alert("X", severity="sev1")), headers=console.auth)
    fams = families(console.get("/metrics").get_data(as_text=True))
    assert sample(fams, "erpctl_alerts_firing", severity="other") == 1


def test_resolved_history_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(alerts, "MAX_RESOLVED", 3)
    for i in range(6):
        alerts.record(tmp_path, notification(alert(f"A{i}", status="resolved")), evidence=False)
    assert len(alerts.recent_resolved(tmp_path, limit=10)) == 3
