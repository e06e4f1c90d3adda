"""Whether the runbooks and the drills are exercised, as metrics (the exporter's):

    erpctl_runbook_last_exercised_timestamp_seconds{runbook, paging}
        when a run of the runbook last ended `recovered` (every Check recovery command green), from the
        runbook runs of the data directory (runbook-runs/) and the runbook runs of the drills (each drill
        record's `runbook`, outcome completed or recovered; a drill's sandbox keeps its own runs); 0: never.
        paging="true" for the runbook of an alert that pages (kind alert, severity page): the alert
        RunbookNotExercised watches those. Every runbook of the runbooks directory has a series.
    erpctl_drill_last_run_timestamp_seconds{scenario}   when the last finished drill (passed or failed) ended
    erpctl_drill_success{scenario}                      1 if it passed, 0 if it failed (alert DrillFailed)
    erpctl_drill_detection_seconds{scenario}            its measured detection time, fault to alert/probe
    erpctl_drill_rto_seconds{scenario}                  its measured RTO, fault to the first business
                                                        transaction after recovery
    erpctl_drill_rpo_lost_writes{scenario}              acknowledged writes missing after its recovery
    erpctl_drill_rpo_seconds{scenario}                  age of the newest surviving acknowledged write

read from the drill records (layout `drill_record`: drills/<id>/record.json, written by the drill engine;
docs/drill-schedule.md lists the metrics). A figure a drill could not measure (null) is NaN. Aborted and
running drills are not runs. Only scenarios with a finished drill have series.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from .. import layout
from ..errors import ControlPlaneError
from ..results import unix_seconds
from ..runbook import records
from ..runbook.parse import parse_runbook, runbook_paths

log = logging.getLogger("controlplane.exporter")

FINISHED_DRILL = ("passed", "failed")
DRILL_RUNBOOK_DONE = ("completed", "recovered")
DRILL_FIGURES = (  # metric, its help, the record's `measured` key
    ("erpctl_drill_detection_seconds", "Detection time measured by the last drill (fault to alert or probe firing)",
     "detection_seconds"),
    ("erpctl_drill_rto_seconds", "Recovery time measured by the last drill (fault to the first business "
     "transaction after recovery)", "rto_seconds"),
    ("erpctl_drill_rpo_lost_writes", "Acknowledged writes missing after the last drill's recovery", "rpo_writes_lost"),
    ("erpctl_drill_rpo_seconds", "Age of the newest acknowledged write that survived the last drill's recovery",
     "rpo_seconds"),
)


class RunbookIndex:
    """The runbooks of a directory with their `paging` label, parsed again only when a file changes."""

    def __init__(self):
        self._seen: dict[Path, tuple[float, str]] = {}

    def paging(self, directory) -> dict[str, str]:
        out = {}
        for path in runbook_paths(Path(directory)) if directory and Path(directory).is_dir() else []:
            try:
                mtime = path.stat().st_mtime
                cached = self._seen.get(path)
                if cached is None or cached[0] != mtime:
                    meta = parse_runbook(path).meta
                    pages = meta.get("kind", "alert") == "alert" and meta.get("severity") == "page"
                    cached = self._seen[path] = (mtime, "true" if pages else "false")
            except (OSError, ValueError, ControlPlaneError):
                continue
            out[path.stem] = cached[1]
        return out


def drill_records(data_dir) -> list[dict]:
    """Every readable drill record of the data directory (a record being written is read whole: atomic)."""
    out = []
    root = layout.path(data_dir, "drills")
    for path in sorted(root.glob(f"*/{layout.basename('drill_record')}")) if root.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _scenario(rec: dict) -> str:
    s = rec.get("scenario")
    return str(s.get("name") if isinstance(s, dict) else s or "")


def last_drills(recs: list[dict]) -> dict[str, dict]:
    """The last finished drill (passed or failed) of each scenario, by its start."""
    last: dict[str, dict] = {}
    for rec in recs:
        name = _scenario(rec)
        if not name or rec.get("state") not in FINISHED_DRILL:
            continue
        if name not in last or unix_seconds(rec.get("started_at")) >= unix_seconds(last[name].get("started_at")):
            last[name] = rec
    return last


def exercised(data_dir, drills: list[dict]) -> dict[str, float]:
    """{runbook: when a run of it last ended recovered}, from the runbook runs and the drills' runbook runs."""
    out: dict[str, float] = {}

    def seen(name, at):
        if name and at > out.get(name, 0.0):
            out[name] = at

    for run in records.all_runs(data_dir):
        if run.status == records.RECOVERED:
            seen(Path(run.runbook).stem, unix_seconds(run.ended_at))
    for rec in drills:
        rb = rec.get("runbook") if isinstance(rec.get("runbook"), dict) else {}
        if rb.get("outcome") in DRILL_RUNBOOK_DONE:
            seen(str(rb.get("name") or ""), unix_seconds(rb.get("ended_at") or rec.get("ended_at")))
    return out


def _figure(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def families(data_dir, runbooks_dir, index: RunbookIndex):
    """The runbook and drill metric families."""
    drills = drill_records(data_dir) if data_dir is not None else []
    when = exercised(data_dir, drills) if data_dir is not None else {}
    rb = GaugeMetricFamily("erpctl_runbook_last_exercised_timestamp_seconds", "When a run of the runbook last "
                           "ended recovered, by hand or in a drill (0: never)", labels=["runbook", "paging"])
    paging = index.paging(runbooks_dir)
    for name in sorted(set(paging) | set(when)):
        rb.add_metric([name, paging.get(name, "false")], when.get(name, 0.0))
    yield rb
    last = last_drills(drills)
    ran = GaugeMetricFamily("erpctl_drill_last_run_timestamp_seconds", "When the scenario's last finished drill "
                            "ended", labels=["scenario"])
    ok = GaugeMetricFamily("erpctl_drill_success", "1 if the scenario's last finished drill passed, 0 if it "
                           "failed", labels=["scenario"])
    figures = [(GaugeMetricFamily(metric, doc, labels=["scenario"]), key) for metric, doc, key in DRILL_FIGURES]
    for name, rec in sorted(last.items()):
        ran.add_metric([name], unix_seconds(rec.get("ended_at") or rec.get("started_at")))
        ok.add_metric([name], 1 if rec.get("state") == "passed" else 0)
        measured = rec.get("measured") if isinstance(rec.get("measured"), dict) else {}
        for fam, key in figures:
            fam.add_metric([name], _figure(measured.get(key)))
    yield from (ran, ok, *(f for f, _ in figures))
