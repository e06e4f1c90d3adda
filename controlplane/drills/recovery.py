"""The scenario's runbook, run on the sandbox by the runbook engine as automation runs it
(runbooks/README.md, "Automation"): `erpctl runbook run NAME --yes --json </dev/null`, and at each manual
step the drill does the people's work the scenario names, then `erpctl runbook resume RUN_ID --done
--json`. The engine's JSON lines are kept as the drill's artifact runbook.jsonl."""

from __future__ import annotations

import json
import subprocess

from .. import layout

EXIT_MANUAL = 62
MAX_MANUAL_STEPS = 20


def run_runbook(drill, params: dict) -> dict:
    """{run_id, status, exit_code, manual: [step numbers], log: Path} of the scenario's runbook on the sandbox."""
    sc, box = drill.sc, drill.box
    log = layout.path(drill.inst.data_dir, "drill", id=drill.rec.id) / "runbook.jsonl"
    extra = [f"--param={k}={v}" for k, v in params.items()]
    args = ["runbook", "run", sc.recover.runbook, "--yes", "--json", *extra]
    out = {"run_id": None, "status": None, "exit_code": None, "manual": [], "log": log}
    with open(log, "a") as f:
        for _ in range(MAX_MANUAL_STEPS):
            paused = _engine(box, args, sc.recover.timeout_seconds, f, out, str(drill.inst.get("runbooks_dir")))
            if paused is None:
                break
            out["manual"].append(paused.get("step"))
            for action in sc.recover.manual:
                drill.phase("recover", f"manual step {paused.get('step')} ({paused.get('title', '')}): "
                                       + drill.injector.act(action))
            if not sc.recover.manual:
                drill.phase("recover", f"manual step {paused.get('step')} ({paused.get('title', '')}): "
                                       "nothing to do in the sandbox, marked done")
            args = ["runbook", "resume", out["run_id"], "--done", "--json"]
    return out


def _engine(box, args: list[str], timeout: float, log, out: dict, runbooks_dir: str) -> dict | None:
    """One engine command; the paused event when it stopped at a manual step."""
    try:
        p = box.erpctl(*args, timeout=timeout, ERPCTL_RUNBOOKS_DIR=runbooks_dir)
    except subprocess.TimeoutExpired as exc:
        out.update(status="timed-out", exit_code=None)
        log.write(json.dumps({"event": "drill-timeout", "seconds": timeout, "args": args[:3]}) + "\n")
        del exc
        return None
    log.write(p.stdout)
    if p.stderr.strip():
        log.write(json.dumps({"event": "stderr", "text": p.stderr[-4000:]}) + "\n")
    out["exit_code"] = p.returncode
    paused = None
    for line in p.stdout.splitlines():
        if not line.startswith("{"):
            continue
        ev = json.loads(line)
        if ev.get("event") in ("start", "resume"):
            out["run_id"] = ev.get("run")
        elif ev.get("event") == "end":
            out["status"] = ev.get("status")
        elif ev.get("event") == "paused":
            paused = ev
    if paused is None and out["status"] is None:
        out["status"] = "failed"
    return paused if p.returncode == EXIT_MANUAL else None
