"""A drill on one app host (playbooks/drill.yml): `erpctl drill run` there, in its sandbox; its record, its
reports and a copy of the host's evidence log fetched into the control installation (fleet/drills/<host>/<id>/),
then checked here: the host's chain and signatures intact, each report attested by a record of that log (by
sha256), the report's record.json the one fetched and the one the host's evidence vouches for."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from .. import layout
from ..drills.report import newest_vouching
from ..errors import FleetDrillFailed
from ..evidence import EvidenceLog, attestations
from ..installation import Installation
from . import playbook

EVIDENCE_FILES = [layout.name("evidence"), layout.name("evidence_head"), layout.name("evidence_public_keys")]
FIGURES = ("detection_seconds", "rto_seconds", "rpo_writes_lost", "rpo_seconds", "acknowledged_writes",
           "duration_seconds")


def fetched_since(inst: Installation, t0: float) -> list[Path]:
    """The drill directories whose record.json the play fetched at or after t0 (wall clock)."""
    root = layout.path(inst.data_dir, "fleet_drills")
    record = layout.basename("drill_record")
    return sorted(p.parent for p in root.glob(f"*/*/{record}") if p.stat().st_mtime >= t0 - 1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(directory: Path) -> dict:
    """What the fetched copy proves: the host's evidence chain, each report attested in it, the record."""
    log = EvidenceLog(directory / "evidence")
    count, problems = log.verify()
    records = log.records() if not problems else []
    record_sha = _sha256(directory / layout.basename("drill_record"))
    reports = []
    for path in sorted(directory.glob("report-*")):
        digest = _sha256(path)
        reports.append({"file": path.name, "path": str(path), "sha256": digest,
                        "attested": bool(attestations(records, sha256=digest))})
    own = [r for r in reports if r["file"].endswith(".json")]
    report_json = json.loads(Path(own[0]["path"]).read_text()) if own else {}
    inner = report_json.get("report", {})
    result = {"evidence_records": count, "evidence_intact": not problems,
              "evidence_problem": problems[0].detail if problems else None,
              "reports": reports, "record_sha256": record_sha,
              "report_record_matches": inner.get("record_sha256") == record_sha,
              "record_vouched": ((newest_vouching(records, directory.name) or {}).get("data") or {})
                                .get("record_sha256") == record_sha}
    result["verified"] = bool(result["evidence_intact"] and reports and all(r["attested"] for r in reports)
                              and result["report_record_matches"] and result["record_vouched"])
    return result


def summary(directory: Path) -> dict:
    """The drill as fetched: host, id, scenario, state, the measured figures against their objectives."""
    record = json.loads((directory / layout.basename("drill_record")).read_text())
    measured = record.get("measured") or {}
    return {"host": directory.parent.name, "drill": directory.name, "scenario": (record.get("scenario") or {}).get("name"),
            "state": record.get("state"), "target": record.get("target"),
            "measured": {k: measured.get(k) for k in FIGURES}, "objectives": record.get("objectives"),
            "directory": str(directory)}


def run(inst: Installation, scenario: str, host: str | None, args: list[str], *, live: bool,
        echo: bool) -> tuple[dict, Exception | None]:
    """Run drill.yml; the fetched drill, checked and recorded in the control evidence log (fleet_drill)."""
    fetch_dir = layout.path(inst.data_dir, "fleet_drills")
    fetch_dir.mkdir(parents=True, exist_ok=True)
    extra = {"erp_drill_scenario": scenario, "erp_drill_target": "live" if live else "sandbox",
             "erp_drill_args": args, "erp_drill_fetch_dir": str(fetch_dir), "erp_drill_evidence_files": EVIDENCE_FILES}
    if host:
        extra["erp_drill_host"] = host
    t0 = time.time()
    result = playbook.run(inst, "drill.yml", echo=echo, extra_vars=extra, kind="fleet_playbook")
    found = fetched_since(inst, t0)
    drill = {**summary(found[-1]), **check(found[-1])} if found else None
    out = {**{k: result[k] for k in ("playbook", "check", "returncode", "seconds", "hosts", "changed", "host_key_refused")},
           "scenario": scenario, "drill": drill, "output": result["output"]}
    failed = playbook.failure(result)
    if drill is not None and not drill["verified"]:
        failed = FleetDrillFailed(f"drill {drill['drill']} on {drill['host']}: its fetched report does not verify "
                                  f"({_why(drill)})", fix=f"Look at the copy in {drill['directory']}; run "
                                                          "'erpctl evidence verify' on the host.")
    elif drill is not None and drill["state"] != "passed":
        failed = FleetDrillFailed(f"drill {drill['drill']} on {drill['host']} {drill['state']}",
                                  fix=f"Read its report's findings: {drill['directory']}.")
    elif drill is None and failed is None:
        failed = FleetDrillFailed(f"the drill play fetched no report of {scenario}",
                                  fix="The play's output above says why.")
    recorded = {k: v for k, v in out.items() if k != "output"}
    EvidenceLog(inst.data_dir).append("fleet_drill", recorded, outcome="ok" if failed is None else "failed")
    return out, failed


def _why(drill: dict) -> str:
    if not drill["evidence_intact"]:
        return f"the host's evidence log is not intact: {drill['evidence_problem']}"
    if not drill["reports"] or not all(r["attested"] for r in drill["reports"]):
        return "a report is not attested by the host's evidence log"
    if not drill["report_record_matches"]:
        return "the report was made from another record.json"
    return "the host's evidence does not vouch for its record.json"
