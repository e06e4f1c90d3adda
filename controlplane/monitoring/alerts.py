"""Alerts received from Alertmanager (webhook JSON, version 4), kept in the data directory.

alerts.json holds the latest state of every alert, keyed by Alertmanager's fingerprint: firing
until a notification says it resolved. Resolved alerts are kept (the newest MAX_RESOLVED) as a
short history. Every notification received is also appended to the evidence log (kind 'alert').
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

from erp_core.errors import ValidationFailed

from ..evidence import EvidenceLog
from ..fsutil import atomic_write_text, locked
from .. import layout

FILE = layout.name("alerts")
MAX_RESOLVED = 200
# Most urgent first. monitors/ uses page (wake someone up), ticket (working hours) and info;
# critical and warning are the common alternative. Any other value counts as "other".
SEVERITIES = ("page", "critical", "ticket", "warning", "info", "other")
URGENT = ("page", "critical")
RUNBOOKS_DIR = (Path(__file__).resolve().parents[1] / "runbook" / "shipped").resolve()  # runbooks/ in a checkout


def _path(data_dir) -> Path:
    return Path(data_dir) / FILE


def _read(data_dir) -> dict:
    try:
        return json.loads(_path(data_dir).read_text())
    except FileNotFoundError:
        return {"alerts": {}}


def _write(data_dir, data: dict) -> None:
    atomic_write_text(_path(data_dir), json.dumps(data, indent=1, sort_keys=True))


def severity_of(alert: dict) -> str:
    sev = str((alert.get("labels") or {}).get("severity", "")).lower()
    return sev if sev in SEVERITIES else "other"


def runbook_of(alert: dict) -> dict:
    """The runbook link of an alert: its runbook_url annotation, else runbooks/<alertname>.md;
    with the local file when this checkout has it."""
    name = (alert.get("labels") or {}).get("alertname", "")
    url = (alert.get("annotations") or {}).get("runbook_url") or f"runbooks/{name}.md"
    local = RUNBOOKS_DIR / f"{Path(url).stem or name}.md"
    return {"runbook_url": url, "runbook_path": str(local) if local.exists() else None}


def _fingerprint(alert: dict) -> str:
    if alert.get("fingerprint"):
        return str(alert["fingerprint"])
    labels = json.dumps(alert.get("labels") or {}, sort_keys=True)
    return hashlib.sha256(labels.encode()).hexdigest()[:16]


def _validate(payload) -> list[dict]:
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise ValidationFailed("expected an Alertmanager webhook notification: a JSON object with an 'alerts' list",
                               fix="Point an Alertmanager webhook_configs url at /alerts/webhook.")
    out = []
    for i, a in enumerate(payload["alerts"]):
        if not isinstance(a, dict) or a.get("status") not in ("firing", "resolved") \
                or not isinstance(a.get("labels"), dict) or not a["labels"].get("alertname"):
            raise ValidationFailed(f"alerts[{i}] needs status firing|resolved and labels with an alertname",
                                   field=f"alerts[{i}]")
        if a.get("annotations") is not None and not isinstance(a["annotations"], dict):
            raise ValidationFailed(f"alerts[{i}].annotations must be an object", field=f"alerts[{i}].annotations")
        out.append(a)
    return out


def record(data_dir, payload, *, evidence: bool = True) -> dict:
    """Apply one webhook notification; returns counts of what changed."""
    incoming = _validate(payload)
    now = time.time()
    now_iso = dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat()
    counts = {"firing": 0, "resolved": 0, "ignored": 0}
    with locked(layout.path(data_dir, "alerts_lock")):
        data = _read(data_dir)
        store = data.setdefault("alerts", {})
        for a in incoming:
            fp = _fingerprint(a)
            old = store.get(fp)
            # A late 'firing' for an alert instance that already resolved (same start) changes nothing.
            if old and old["status"] == "resolved" and a["status"] == "firing" \
                    and old.get("startsAt") == a.get("startsAt"):
                counts["ignored"] += 1
                continue
            entry = {
                "fingerprint": fp,
                "status": a["status"],
                "labels": {str(k): str(v) for k, v in a["labels"].items()},
                "annotations": {str(k): str(v) for k, v in (a.get("annotations") or {}).items()},
                "startsAt": a.get("startsAt"),
                "endsAt": a.get("endsAt"),
                "generatorURL": a.get("generatorURL"),
                "receiver": payload.get("receiver"),
                "first_received_at": (old or {}).get("first_received_at", now_iso)
                if (old or {}).get("startsAt") == a.get("startsAt") else now_iso,
                "last_received_at": now_iso,
                "last_received": now,
            }
            if a["status"] == "resolved":
                entry["resolved_at"] = now_iso
            store[fp] = entry
            counts[a["status"]] += 1
        resolved = sorted((e for e in store.values() if e["status"] == "resolved"),
                          key=lambda e: e["last_received"], reverse=True)
        for e in resolved[MAX_RESOLVED:]:
            del store[e["fingerprint"]]
        data["updated_at"] = now_iso
        _write(data_dir, data)
    if evidence:
        EvidenceLog(data_dir).append("alert", {
            "receiver": payload.get("receiver"), "status": payload.get("status"),
            "group_key": payload.get("groupKey"), "external_url": payload.get("externalURL"),
            "alerts": [{"alertname": a["labels"].get("alertname"), "status": a["status"],
                        "severity": a["labels"].get("severity"), "fingerprint": _fingerprint(a),
                        "startsAt": a.get("startsAt"), "endsAt": a.get("endsAt"),
                        "runbook_url": (a.get("annotations") or {}).get("runbook_url")} for a in incoming],
        }, actor="alertmanager")
    return counts


def _public(e: dict) -> dict:
    out = {k: v for k, v in e.items() if k != "last_received"}
    out["alertname"] = e["labels"].get("alertname")
    out["severity"] = severity_of(e)
    out["summary"] = e["annotations"].get("summary", "")
    out.update(runbook_of(e))
    return out


def active(data_dir) -> list[dict]:
    """Firing alerts, most severe first, then oldest first."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    firing = [_public(e) for e in _read(data_dir).get("alerts", {}).values() if e["status"] == "firing"]
    return sorted(firing, key=lambda e: (order[e["severity"]], e.get("startsAt") or "", e["alertname"]))


def recent_resolved(data_dir, limit: int = 20) -> list[dict]:
    resolved = [e for e in _read(data_dir).get("alerts", {}).values() if e["status"] == "resolved"]
    resolved.sort(key=lambda e: e["last_received"], reverse=True)
    return [_public(e) for e in resolved[:limit]]


def firing_by_severity(data_dir) -> dict[str, int]:
    counts = dict.fromkeys(SEVERITIES, 0)
    for e in _read(data_dir).get("alerts", {}).values():
        if e["status"] == "firing":
            counts[severity_of(e)] += 1
    return counts
