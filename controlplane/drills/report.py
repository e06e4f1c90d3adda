"""A drill's report for auditors: `erpctl drill report ID --format html|json|pdf --lang en|zh`.

Built from the drill's record.json alone (and the artifacts beside it, whose sha256 is checked again
now): scenario and versions, objectives declared before the fault, participants and approvals, the
timeline, target against measured with pass or fail, data checks, findings, remediation items,
sign-offs, the retention date, and the sha256 of every artifact and of the record itself.
HTML is one self-contained page (report_html.py); PDF is that page printed by headless Chromium.
Every report written is recorded in the evidence log with its sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__, layout
from ..errors import NoPdfRenderer
from ..evidence import EvidenceLog, attest_file
from ..fsutil import atomic_write_text, fsync_dir
from ..release.wheel import sha256_of
from .loader import load_record
from .report_i18n import LANGS
from .report_html import render_html
from .review import OBJECTIVES, parse_time, result_of

FORMATS = ("html", "json", "pdf")
REPORT_VERSION = 1
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PDF_TIMEOUT_SECONDS = 90


@dataclass
class Report:
    """What a report shows, in any language and format."""

    record: dict
    record_sha256: str
    artifacts: list[dict]
    objectives: dict
    results: list[dict]
    timeline: list[dict]
    generated_at: str
    evidence: dict = field(default_factory=dict)
    version: str = __version__


def _artifacts(directory: Path, rows: list[dict]) -> list[dict]:
    """Each recorded artifact with what its file holds now: matches, differs or missing."""
    out = []
    for row in rows:
        name = str(row.get("name", ""))
        path = directory / name
        inside = path.resolve().is_relative_to(directory.resolve()) and path.is_file()
        now = sha256_of(path) if inside else None
        state = "missing" if now is None else ("matches" if now == row.get("sha256") else "differs")
        out.append({"name": name, "bytes": row.get("bytes"), "sha256": row.get("sha256"), "sha256_now": now,
                    "state": state})
    return out


def _objectives(record: dict, timeline: list[dict]) -> dict:
    """The objectives, when they were declared, and how long before the first fault event."""
    declared = dict(record.get("objectives") or {})
    fault = next((e for e in timeline if e.get("phase") == "fault"), None)
    declared_at, fault_at = parse_time(declared.get("declared_at")), parse_time(fault and fault.get("at"))
    lead = (fault_at - declared_at).total_seconds() if declared_at and fault_at else None
    return {**declared, "fault_at": fault and fault.get("at"), "lead_seconds": lead}


def newest_vouching(records, drill_id: str) -> dict | None:
    """The newest evidence record naming this drill's record.json sha256: the engine's final record (`drill`),
    a sign-off or a finding (`id`); not a report's, which only repeats what it read."""
    latest = None
    for rec in records:
        data = rec.get("data") or {}
        if drill_id in (data.get("id"), data.get("drill")) and data.get("record_sha256") \
                and rec.get("kind") != "drill.report":
            latest = rec
    return latest


def vouched(data_dir, drill_id: str, sha256: str) -> dict:
    """Whether the evidence log's newest record vouching for this drill's record.json holds this very record:
    matches, differs, or unrecorded."""
    try:
        latest = newest_vouching(EvidenceLog(data_dir).records(), drill_id)
    except ValueError:
        return {"state": "unreadable"}
    if latest is None:
        return {"state": "unrecorded"}
    same = latest["data"]["record_sha256"] == sha256
    return {"state": "matches" if same else "differs", "seq": latest.get("seq"), "kind": latest.get("kind"),
            "record_sha256": latest["data"]["record_sha256"]}


def build(data_dir, drill_id: str, *, now: dt.datetime | None = None) -> Report:
    record = load_record(data_dir, drill_id)
    raw = layout.path(data_dir, "drill_record", id=drill_id).read_bytes()
    timeline = sorted(record.get("timeline") or [], key=lambda e: parse_time(e.get("at")) or dt.datetime.min
                      .replace(tzinfo=dt.timezone.utc))
    results = [{"objective": o, **result_of(record, o)} for o in OBJECTIVES]
    at = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds").replace("+00:00", "Z")
    sha256 = hashlib.sha256(raw).hexdigest()
    return Report(record=record, record_sha256=sha256,
                  artifacts=_artifacts(layout.path(data_dir, "drill", id=drill_id), record.get("artifacts") or []),
                  objectives=_objectives(record, timeline), results=results, timeline=timeline, generated_at=at,
                  evidence=vouched(data_dir, drill_id, sha256))


def render_json(report: Report, lang: str) -> str:
    """The record as it was read, with the checks this report made (artifacts, objectives, results)."""
    return json.dumps({"report": {"version": REPORT_VERSION, "generated_at": report.generated_at,
                                  "erpctl": report.version, "lang": lang, "record_sha256": report.record_sha256,
                                  "record_evidence": report.evidence, "objectives": report.objectives, "results": report.results,
                                  "artifacts": report.artifacts},
                       "record": report.record}, indent=2, ensure_ascii=False) + "\n"


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


def render_pdf(html_text: str, out: Path) -> None:
    """Print the HTML page to `out` with headless Chromium (NoPdfRenderer when there is none)."""
    chromium = find_chromium()
    if chromium is None:
        raise NoPdfRenderer("--format pdf needs headless Chromium, and none is installed "
                            f"(looked for {', '.join(CHROMIUM_NAMES)} on PATH)",
                            fix="Install it (apt-get install chromium), or write --format html and print that "
                                "page from any browser.")
    with tempfile.TemporaryDirectory(prefix="erpctl-pdf-") as scratch:
        page = Path(scratch) / "report.html"
        page.write_text(html_text, encoding="utf-8")
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={scratch}/profile", "--no-pdf-header-footer", "--print-to-pdf-no-header",
                f"--print-to-pdf={out}", page.as_uri()]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=PDF_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise NoPdfRenderer(f"{chromium} did not print the report within {PDF_TIMEOUT_SECONDS} s",
                                fix="Write --format html and print it from a browser.") from None
    if done.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        raise NoPdfRenderer(f"{chromium} could not print the report (exit {done.returncode}): "
                            f"{done.stderr.strip()[-400:]}", fix="Write --format html and print it from a browser.")


def default_out(data_dir, drill_id: str, fmt: str, lang: str) -> Path:
    return layout.path(data_dir, "drill_report", id=drill_id, lang=lang, format=fmt)


def write(inst, drill_id: str, fmt: str, lang: str, out: str | os.PathLike | None = None, *,
          actor: str | None = None) -> dict:
    """Write the report (atomically) and record it in the evidence log with its sha256."""
    assert fmt in FORMATS and lang in LANGS, (fmt, lang)
    report = build(inst.data_dir, drill_id)
    path = Path(out) if out else default_out(inst.data_dir, drill_id, fmt, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        atomic_write_text(path, render_json(report, lang))
    elif fmt == "html":
        atomic_write_text(path, render_html(report, lang))
    else:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            render_pdf(render_html(report, lang), tmp.resolve())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
    written = {"id": drill_id, "path": str(path.resolve()), "sha256": sha256_of(path), "format": fmt,
               "lang": lang, "bytes": path.stat().st_size, "record_sha256": report.record_sha256,
               "state": report.record.get("state")}
    attest_file(EvidenceLog(inst.data_dir), "drill.report", path,
                {k: written[k] for k in ("id", "format", "lang", "record_sha256", "state")}, actor=actor)
    return written
