"""The audit report: what an auditor asks for first, from the evidence log.

For a period it counts every backup, backup verification, restore test, upgrade, runbook run and
drill, with their outcomes, the latest of each and every failure, and puts the evidence log's own
verification (chain, signatures) on top: a summary of a log that is not intact says so first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from .evidence import EvidenceLog, attested_file
from . import results
from .errors import ControlPlaneError

OK_OUTCOMES = {"ok", "passed", "recovered", "repaired", "done", "completed", "restored", "swapped"}
FAILED_OUTCOMES = {"failed", "not-recovered", "aborted", "error", "rolled_back", "rolled-back"}


@dataclass(frozen=True)
class Category:
    key: str
    title: str
    matches: Callable[[str], bool]


CATEGORIES = (
    Category("backup", "backups", lambda k: k == "backup.create"),
    Category("backup_verification", "backup verifications", lambda k: k == "backup.verify"),
    Category("restore_test", "restore tests", lambda k: k == "backup.restore_test"),
    Category("pitr_restore", "point-in-time restores and verifications (PostgreSQL)",
             lambda k: k in ("pitr.restore", "pitr.verify")),
    Category("failover", "database failovers", lambda k: k == "fleet.failover"),
    Category("upgrade", "upgrades (apply, resume, rollback)", lambda k: k.startswith("upgrade")),
    Category("runbook_run", "runbook runs (ended)", lambda k: k == "runbook.end"),
    Category("drill", "drills (ended)", lambda k: k == "drill.end"),
    Category("drill_report", "drill reports published", lambda k: k == "drill.report"),
)


def parse_when(text: str, *, end: bool = False) -> dt.datetime:
    """A date (YYYY-MM-DD: its start, or its end with end=True) or an ISO time; UTC unless it says."""
    value = dt.datetime.fromisoformat(text)
    if len(text) == 10 and end:
        value += dt.timedelta(days=1)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def outcome_class(outcome: str | None) -> str:
    o = (outcome or "").lower()
    if o in FAILED_OUTCOMES or "fail" in o:
        return "failed"
    return "ok" if o in OK_OUTCOMES else "other"


def _brief(rec: dict) -> dict:
    data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
    what = {k: data[k] for k in ("backup", "backup_id", "runbook", "run", "scenario", "drill", "id", "level",
                                 "error", "status", "to_version", "to", "before_xid", "new_primary")
            if k in data and data[k] not in (None, "", [])}
    out = {"seq": rec.get("seq"), "at": rec.get("at"), "kind": rec.get("kind"), "outcome": rec.get("outcome"),
           "actor": rec.get("actor"), "what": what}
    if (f := attested_file(rec)) is not None:
        out["file"] = {"name": f.get("name"), "sha256": f.get("sha256")}
    return out


def report(log: EvidenceLog, since: dt.datetime, until: dt.datetime | None = None) -> dict:
    """The report for records at or after `since` and before `until` (None: now)."""
    check = log.check()
    problems = check.problems
    chain = {"ok": not problems, "records": check.records,
             "first_problem": problems[0].as_dict() if problems else None,
             "signed": check.signed, "unsigned_through": check.unsigned_through}
    until = until or dt.datetime.now(dt.timezone.utc)
    rows = {c.key: {"title": c.title, "count": 0, "ok": 0, "failed": 0, "other": 0, "latest": None, "failures": []}
            for c in CATEGORIES}
    in_period = 0
    for rec in log.readable_records():
        try:
            at = dt.datetime.fromisoformat(str(rec.get("at")))
        except ValueError:
            continue
        if not since <= at < until:
            continue
        in_period += 1
        for c in CATEGORIES:
            if c.matches(str(rec.get("kind", ""))):
                row = rows[c.key]
                cls = outcome_class(rec.get("outcome"))
                row["count"] += 1
                row[cls] += 1
                row["latest"] = _brief(rec)
                if cls == "failed":
                    row["failures"].append(_brief(rec))
    return {"since": since.isoformat(), "until": until.isoformat(), "evidence": str(log.path), "chain": chain,
            "records_in_period": in_period, "categories": rows, "latest_results": _results(log)}


def _results(log: EvidenceLog) -> dict:
    """The latest result per operation kind (results.json), whatever its date."""
    try:
        return {k: {"ok": v.ok, "at": v.at_iso} for k, v in results.read(log.dir).items()}
    except ControlPlaneError:  # a report on a damaged installation still reports the evidence
        return {}
