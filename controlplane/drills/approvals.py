"""Approvals of live drills.

`erpctl drill approve SCENARIO --by NAME --window START/END` records one approval (in
<data dir>/drills/approvals.json and in the evidence log). A drill on the live installation
(`erpctl drill run --target live`) asks `require_live`, which returns the approvals it may run under or
raises LiveDrillNotApproved naming what is missing: two approvals by two different named people, neither
of them the operator, whose maintenance windows both contain now; and a scenario that is not marked
`destructive: true`. An approval expires with its window.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import layout
from ..errors import ApprovalRefused, DataDirProblem, LiveDrillNotApproved
from ..evidence import EvidenceLog
from ..fsutil import atomic_write_text, locked

VERSION = 1
NEEDED = 2
SCENARIO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime

    def contains(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end

    def as_dict(self) -> dict:
        return {"start": _iso(self.start), "end": _iso(self.end)}


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def parse_time(text: str, what: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ApprovalRefused(f"the {what} {text!r} is not an ISO-8601 time", field="window",
                              fix="Write it as 2026-12-05T22:00Z or 2026-12-06T06:00+08:00.") from None
    if when.tzinfo is None:
        raise ApprovalRefused(f"the {what} {text!r} has no time zone", field="window",
                              fix="Add Z (UTC) or an offset such as +08:00.")
    return when


def parse_window(text: str, now: dt.datetime | None = None) -> Window:
    """START/END (ISO-8601 times with a zone): END after START and still to come."""
    start, sep, end = (text or "").partition("/")
    if not sep:
        raise ApprovalRefused(f"the window {text!r} is not START/END", field="window",
                              fix="Give --window 2026-12-05T22:00Z/2026-12-06T02:00Z.")
    window = Window(parse_time(start, "window start"), parse_time(end, "window end"))
    if window.end <= window.start:
        raise ApprovalRefused(f"the window {text!r} ends before it starts", field="window",
                              fix="Give the start first: --window START/END.")
    if window.end <= (now or utcnow()):
        raise ApprovalRefused(f"the window {text!r} has already ended: an approval for it could never be used",
                              field="window", fix="Approve a window that is still to come.")
    return window


def scenario_path(inst, name: str) -> Path:
    if not SCENARIO_NAME.match(name or ""):
        raise ApprovalRefused(f"{name!r} is not a scenario name", field="scenario",
                              fix="Use a name from 'erpctl drill scenarios' (runbooks/drills/<name>.yaml).")
    return Path(inst.get("runbooks_dir")) / "drills" / f"{name}.yaml"


def is_destructive(inst, name: str) -> bool:
    """The scenario file's `destructive` key (only that key is read here); ApprovalRefused if no such file."""
    path = scenario_path(inst, name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ApprovalRefused(f"no drill scenario {name!r} ({path} does not exist)", field="scenario",
                              fix="Use a name from 'erpctl drill scenarios'.") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ApprovalRefused(f"the drill scenario {path} cannot be read: {exc}", field="scenario",
                              fix="Fix the file (runbooks/drills/README.md describes it).") from None
    return isinstance(data, dict) and data.get("destructive") is True


def _file(inst) -> Path:
    return inst.path("drill_approvals")


def load(inst) -> list[dict]:
    path = _file(inst)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise DataDirProblem(f"the approvals file {path} cannot be read: {exc}",
                             fix="Restore it from a backup of the data directory; every approval is also "
                                 "in the evidence log.") from None
    if data.get("version") != VERSION:
        raise DataDirProblem(f"{path} is not a version {VERSION} approvals file",
                             fix="Use an erpctl that reads its version.")
    return list(data.get("approvals", []))


def approve(inst, scenario: str, by: str, window: Window, comment: str = "", *,
            actor: str | None = None, now: dt.datetime | None = None) -> dict:
    """Record one approval of a live drill of `scenario` (evidence-logged first, then kept in approvals.json)."""
    by = (by or "").strip()
    if not by:
        raise ApprovalRefused("an approval needs the approver's name (--by)", field="by",
                              fix="Give --by with the approver's full name.")
    if is_destructive(inst, scenario):
        raise ApprovalRefused(f"the scenario {scenario!r} destroys data (destructive: true): it never runs on "
                              "the live installation, so it cannot be approved", field="scenario",
                              fix=f"Run it in a sandbox: erpctl drill run {scenario}.")
    approval = {"scenario": scenario, "by": by, "at": _iso(now or utcnow()), "window": window.as_dict(),
                "comment": comment or ""}
    with locked(inst.path("drill_approvals_lock")):
        rows = load(inst)
        record = EvidenceLog(inst.data_dir).append("drill.approve", approval, actor=actor)
        approval["evidence"] = {"seq": record["seq"], "hash": record["hash"], "actor": record["actor"]}
        rows.append(approval)
        atomic_write_text(_file(inst), json.dumps({"version": VERSION, "approvals": rows}, indent=2,
                                                  ensure_ascii=False) + "\n")
    return approval


def _window(row: dict) -> Window | None:
    try:
        return Window(dt.datetime.fromisoformat(row["window"]["start"]),
                      dt.datetime.fromisoformat(row["window"]["end"]))
    except (KeyError, TypeError, ValueError):
        return None


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def usable(rows: list[dict], scenario: str, operator: str, now: dt.datetime) -> tuple[list[dict], list[str]]:
    """The approvals of `scenario` a live drill by `operator` may run under now (one per person, the newest),
    and why each other approval of the scenario does not count."""
    good: list[dict] = []
    ignored: list[str] = []
    for row in sorted((r for r in rows if r.get("scenario") == scenario), key=lambda r: r.get("at", ""),
                      reverse=True):
        by, window = str(row.get("by", "")), _window(row)
        if window is None:
            ignored.append(f"{by}: the approval has no readable window")
        elif not window.contains(now):
            ended = window.end <= now
            ignored.append(f"{by}: its window {'ended' if ended else 'starts'} at "
                           f"{_iso(window.end if ended else window.start)}")
        elif _same(by, operator):
            ignored.append(f"{by}: the operator cannot approve their own drill")
        elif any(_same(by, g["by"]) for g in good):
            ignored.append(f"{by}: already counted (one approval per person)")
        else:
            good.append(row)
    return good, ignored


def require_live(inst, scenario_name: str, operator: str, now: dt.datetime | None = None) -> list[dict]:
    """The approvals a live drill of `scenario_name` by `operator` runs under (two, by different people other
    than the operator, windows containing now), or LiveDrillNotApproved naming what is missing."""
    now = now or utcnow()
    try:
        destructive = is_destructive(inst, scenario_name)
    except ApprovalRefused as exc:
        raise LiveDrillNotApproved(exc.detail, fix=exc.fix, missing=["scenario"]) from None
    if destructive:
        raise LiveDrillNotApproved(f"the scenario {scenario_name!r} destroys data (destructive: true): it is "
                                   "never run on the live installation", missing=["non-destructive scenario"],
                                   fix=f"Run it in a sandbox: erpctl drill run {scenario_name}.")
    good, ignored = usable(load(inst), scenario_name, operator, now)
    if len(good) >= NEEDED:
        return good[:NEEDED]
    have = ", ".join(g["by"] for g in good) or "none"
    why = f"; not counted: {'; '.join(ignored)}" if ignored else ""
    raise LiveDrillNotApproved(
        f"a live drill of {scenario_name!r} by {operator!r} needs {NEEDED} approvals by {NEEDED} different named "
        f"people other than the operator, in a maintenance window containing now ({_iso(now)}): "
        f"{len(good)} valid ({have}){why}",
        missing=[f"{NEEDED - len(good)} more approval(s) in a window containing now"],
        fix=f"Each approver other than {operator} runs: erpctl drill approve {scenario_name} --by NAME "
            "--window START/END (a window containing the drill's time).")


def common_window(approvals: list[dict]) -> dict | None:
    """The maintenance window all `approvals` share (the drill record's `window`), or None."""
    windows = [w for w in map(_window, approvals) if w is not None]
    if not windows:
        return None
    return Window(max(w.start for w in windows), min(w.end for w in windows)).as_dict()
