"""After a drill: sign-offs, findings and remediation items added to its record, and the list of drills.

Each change rewrites record.json atomically under the record's lock and is recorded in the evidence log
with the new record's sha256. A drill still running takes neither: its engine rewrites the record at
every phase change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

from .. import layout
from ..errors import DataDirProblem, DrillEditRefused, DrillNotFound
from ..evidence import EvidenceLog
from ..fsutil import atomic_write_text, locked
from .loader import DRILL_ID, load_record

SEVERITIES = ("high", "medium", "low")
OBJECTIVES = ("detection", "rto", "rpo_writes", "rpo_seconds")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text) -> dt.datetime | None:
    """An ISO-8601 time of the record (UTC when it names no zone), or None."""
    try:
        when = dt.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _edit(inst, drill_id: str, kind: str, change, evidence: dict, actor: str | None) -> dict:
    """Load the record under its lock, refuse a running drill, apply `change`, write, evidence-log."""
    with locked(inst.path("drill_record_lock", id=drill_id)):
        record = load_record(inst.data_dir, drill_id)
        if record.get("state") == "running":
            raise DrillEditRefused(f"drill {drill_id} is still running: its record takes sign-offs and findings "
                                   "once it has ended",
                                   fix=f"Wait for it to end, or stop it: erpctl drill abort {drill_id}.")
        row = change(record)
        text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        atomic_write_text(inst.path("drill_record", id=drill_id), text)
        EvidenceLog(inst.data_dir).append(kind, {"id": drill_id, **evidence, **row,
                                                 "record_sha256": hashlib.sha256(text.encode()).hexdigest()},
                                          actor=actor)
    return row


def sign_off(inst, drill_id: str, role: str, name: str, comment: str = "", *, actor: str | None = None) -> dict:
    role, name = " ".join((role or "").split()), " ".join((name or "").split())
    if not role or not name:
        raise DrillEditRefused("a sign-off needs a role and a name", field="role" if not role else "name",
                               fix="Give --role (e.g. 'drill lead', 'auditor') and --name.")

    def change(record: dict) -> dict:
        signoffs = record.setdefault("signoffs", [])
        if any(s.get("role") == role and s.get("name") == name for s in signoffs):
            raise DrillEditRefused(f"{name} has already signed drill {drill_id} off as {role}",
                                   fix="erpctl drill report shows the sign-offs recorded.")
        row = {"role": role, "name": name, "at": now_iso(), "comment": comment or ""}
        signoffs.append(row)
        return row

    return _edit(inst, drill_id, "drill.signoff", change, {}, actor)


def next_finding_id(findings: list[dict]) -> str:
    numbers = [int(m.group(1)) for f in findings if (m := re.fullmatch(r"F(\d+)", str(f.get("id", ""))))]
    return f"F{max(numbers, default=0) + 1}"


def add_finding(inst, drill_id: str, text: str, severity: str, *, owner: str | None = None,
                due: str | None = None, action: str | None = None, actor: str | None = None) -> dict:
    """A finding (F<n>) and, with --action, its remediation item (owner, due date, status open)."""
    text = (text or "").strip()
    if not text:
        raise DrillEditRefused("a finding needs its text", field="text", fix="Give --text.")
    if severity not in SEVERITIES:
        raise DrillEditRefused(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}", field="severity",
                               fix="Give --severity high, medium or low.")
    if (owner or due) and not action:
        raise DrillEditRefused("a remediation item needs its action", field="action",
                               fix="Give --action with --owner and --due.")
    if due:
        try:
            dt.date.fromisoformat(due)
        except ValueError:
            raise DrillEditRefused(f"due date {due!r} is not YYYY-MM-DD", field="due",
                                   fix="Give --due as 2027-01-31.") from None

    def change(record: dict) -> dict:
        finding = {"id": next_finding_id(record.setdefault("findings", [])), "text": text, "severity": severity}
        record["findings"].append(finding)
        row = {"finding": finding}
        if action:
            item = {"finding": finding["id"], "action": action.strip(), "owner": (owner or "").strip(),
                    "due": due or "", "status": "open"}
            record.setdefault("remediation", []).append(item)
            row["remediation"] = item
        return row

    return _edit(inst, drill_id, "drill.finding", change, {}, actor)


def remediation_done(inst, drill_id: str, finding_id: str, *, actor: str | None = None) -> dict:
    """Mark the open remediation items of finding `finding_id` done (a finished drill only)."""

    def change(record: dict) -> dict:
        items = [i for i in record.get("remediation") or [] if i.get("finding") == finding_id]
        if not items:
            raise DrillEditRefused(f"drill {drill_id} has no remediation item for finding {finding_id!r}",
                                   field="finding", fix="erpctl drill report shows the findings and their items.")
        open_items = [i for i in items if i.get("status") != "done"]
        if not open_items:
            raise DrillEditRefused(f"the remediation of finding {finding_id} is already done", field="finding",
                                   fix="erpctl drill report shows the findings and their items.")
        for item in open_items:
            item.update(status="done", done_at=now_iso())
        return {"finding": finding_id, "done": open_items}

    return _edit(inst, drill_id, "drill.remediation", change, {}, actor)


def result_of(record: dict, objective: str) -> dict:
    """The target, the measured value and pass/fail of one objective (from `results`, else `objectives`)."""
    for r in record.get("results") or []:
        if r.get("objective") == objective:
            return {"target": r.get("target"), "measured": r.get("measured"), "pass": bool(r.get("pass"))}
    keys = {"detection": ("detection_seconds", "detection_seconds"), "rto": ("rto_seconds", "rto_seconds"),
            "rpo_writes": ("rpo_writes", "rpo_writes_lost"), "rpo_seconds": ("rpo_seconds", "rpo_seconds")}
    target_key, measured_key = keys[objective]
    return {"target": (record.get("objectives") or {}).get(target_key),
            "measured": (record.get("measured") or {}).get(measured_key), "pass": None}


def summary(record: dict) -> dict:
    """One line of `erpctl drill list`."""
    scenario = record.get("scenario") or {}
    return {"id": record.get("id"), "scenario": scenario.get("name"), "target": record.get("target"),
            "state": record.get("state"), "started_at": record.get("started_at"),
            "ended_at": record.get("ended_at"),
            "results": {o: result_of(record, o) for o in OBJECTIVES},
            "signoffs": [{"role": s.get("role"), "name": s.get("name")} for s in record.get("signoffs") or []],
            "open_remediation": sum(1 for r in record.get("remediation") or [] if r.get("status") != "done")}


def list_drills(data_dir) -> list[dict]:
    """Every drill of the data directory, newest first; an unreadable record is listed as such."""
    root = layout.path(data_dir, "drills")
    rows = []
    for path in sorted(root.iterdir() if root.is_dir() else [], reverse=True):
        if not (path.is_dir() and DRILL_ID.match(path.name)):
            continue
        try:
            rows.append(summary(load_record(data_dir, path.name)))
        except (DrillNotFound, DataDirProblem) as exc:  # one bad record must not hide the others
            rows.append({"id": path.name, "state": "unreadable", "error": exc.detail})
    return rows
