"""What each console page shows, computed by the functions the `erpctl` commands call (status, backup
list, upgrade plan/status, runbook history, drill list/report, evidence verify): the console adds
no second way of reading the installation. Each function returns plain data for a template; a
failure an operator can act on (no backup repository, a wrong key, nothing to upgrade) is returned
as {"problem": ..., "fix": ...} for the page to show, never raised."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from erp_core.errors import ErpError

from ..evidence import EvidenceLog
from ..installation import Installation

EVIDENCE_PAGE = 200
MAX_QUERY = 200


def problem(exc: ErpError) -> dict:
    return {"problem": str(getattr(exc, "detail", None) or exc), "fix": getattr(exc, "fix", None)}


def overview(inst: Installation) -> dict:
    """`erpctl status --no-recheck` (a page view runs no probe and records nothing)."""
    from ..cli.status import _release
    from ..monitoring import status as monitoring_status

    report = monitoring_status.gather(inst, None, 1.5, {"prometheus": None, "alertmanager": None})
    report["release"] = _release(inst, report["erp"]["served_by_erpctl_up"])
    return report


def runbook(inst: Installation, name: str) -> dict:
    """`erpctl runbook show NAME`: its steps, their prose and commands."""
    from ..cli.runbook_show import _as_dict
    from ..runbook.parse import find

    return _as_dict(find(inst.get("runbooks_dir"), name))


def _verifications(data_dir) -> dict[str, list[dict]]:
    """Each backup's verifications from the evidence log, newest first (levels with their results and
    durations, as `erpctl backup verify` recorded them)."""
    out: dict[str, list[dict]] = {}
    for rec in EvidenceLog(data_dir).readable_records():
        if str(rec.get("kind", "")).startswith("backup.verify") and isinstance(rec.get("data"), dict):
            d = rec["data"]
            out.setdefault(str(d.get("backup")), []).insert(0, {**d, "at": rec.get("at"), "actor": rec.get("actor"),
                                                                "seq": rec.get("seq")})
    return out


def backups(inst: Installation) -> dict:
    """`erpctl backup list` with each backup's verifications."""
    from ..backup import access

    try:
        repository = access.open_repo(inst)
        rows = [m.summary() for m in repository.list_manifests()]
    except ErpError as exc:
        return {"repository": inst.get("backup_repo"), "backups": [], **problem(exc)}
    found = _verifications(inst.data_dir)
    for b in rows:
        b.pop("tables", None)
        b["verifications"] = found.get(str(b["id"]), [])
    rows.reverse()  # newest first
    return {"repository": repository.url, "backups": rows}


def upgrade(inst: Installation) -> dict:
    """`erpctl upgrade status`, `erpctl upgrade plan` and the finished upgrades."""
    from ..upgrade import state

    current = state.status(inst.data_dir)
    out = {"status": current, "history": [h.summary() for h in reversed(state.history(inst.data_dir))][:20],
           "running": current["status"] in state.WORKING and current.get("alive") is not False}
    if current["status"] == "none":
        from ..upgrade import engine

        try:
            out["plan"] = engine.plan(engine.UpgradeOptions(target=inst))
        except ErpError as exc:
            out["plan"] = problem(exc)
    return out


def runbook_runs(inst: Installation, limit: int = 100) -> list[dict]:
    """`erpctl runbook history`."""
    from ..runbook import records

    return [{"id": rec.id, "runbook": rec.runbook, "status": records.shown_status(inst.data_dir, rec),
             "step": rec.step, "waiting": rec.waiting, "findings": len(rec.findings), "operator": rec.operator,
             "started_at": rec.started_at, "ended_at": rec.ended_at, "steps_done": len(rec.steps)}
            for rec in records.all_runs(inst.data_dir)[:limit]]


def drills(inst: Installation) -> list[dict]:
    """`erpctl drill list`."""
    from ..drills.review import list_drills

    return list_drills(inst.data_dir)


def scenarios(inst: Installation) -> list[str]:
    """The drill scenarios an operator may start (runbooks/drills/*.yaml)."""
    base = Path(inst.get("runbooks_dir")) / "drills"
    return sorted(p.stem for p in base.glob("*.yaml")) if base.is_dir() else []


def drill_report(inst: Installation, drill_id: str, lang: str) -> tuple[str, dict]:
    """The drill's HTML report in `lang` (en | zh): the one `erpctl drill report` published, with the
    evidence records that attest it; else rendered now from the record (not published: nothing is
    written, an auditor changes nothing by reading)."""
    from ..drills import report
    from ..evidence import attestations
    from ..release.wheel import sha256_of

    published = report.default_out(inst.data_dir, drill_id, "html", lang)
    if published.is_file():
        digest = sha256_of(published)
        recs = attestations(EvidenceLog(inst.data_dir).readable_records(), sha256=digest)
        return published.read_text(encoding="utf-8"), {"published": True, "sha256": digest,
                                                       "attested_by": [r.get("seq") for r in recs]}
    return report.render_html(report.build(inst.data_dir, drill_id), lang), {"published": False}


def _day(text: str, end: bool) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        return None
    at = dt.datetime.combine(day, dt.time.max if end else dt.time.min, tzinfo=dt.timezone.utc)
    return at


def _when(rec: dict) -> dt.datetime | None:
    try:
        at = dt.datetime.fromisoformat(str(rec.get("at")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)


def evidence(inst: Installation, kind: str = "", text: str = "", since: str = "", until: str = "") -> dict:
    """The evidence log's records matching the search (newest first, at most EVIDENCE_PAGE), and
    `erpctl evidence verify`'s result (the chain and signatures; --anchors is the CLI's)."""
    from .. import evidence_anchor

    kind, text = kind.strip()[:MAX_QUERY], text.strip()[:MAX_QUERY]
    start, end = _day(since, False) if since else None, _day(until, True) if until else None
    bad = [name for name, value, parsed in (("since", since, start), ("until", until, end)) if value and not parsed]
    log = EvidenceLog(inst.data_dir)
    rows, kinds = [], set()
    for rec in log.readable_records():
        kinds.add(str(rec.get("kind")))
        when = _when(rec)
        if kind and not str(rec.get("kind", "")).startswith(kind):
            continue
        if text and text.casefold() not in json.dumps(rec, ensure_ascii=False, default=str).casefold():
            continue
        if (start and (when is None or when < start)) or (end and (when is None or when > end)):
            continue
        rows.append({**rec, "data_text": json.dumps(rec.get("data"), ensure_ascii=False, indent=1, default=str)})
    rows.reverse()
    return {"records": rows[:EVIDENCE_PAGE], "matched": len(rows), "kinds": sorted(kinds), "bad_dates": bad,
            "verify": evidence_anchor.verify(log)}
