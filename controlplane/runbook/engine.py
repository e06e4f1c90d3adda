"""The runbook engine: walk a runbook's steps in order, run their blocks, log every step.

- ```erpctl blocks: each line is run as an erpctl command of this interpreter (beside sys.executable);
  ```sh blocks: `sh -eu -c SCRIPT`, one unit. Output (stdout and stderr) is shown, secrets masked, and
  its SHA-256 kept. Blocks run in the current directory, stdin closed, with the run's environment.
- `confirm` blocks run after a yes: --yes (for the whole run, resumes included), or typed on a terminal;
  else the run pauses (waiting-confirmation, exit 61).
- A Recover step without a command block is manual: typed `done` on a terminal, or `resume --done`;
  else the run pauses (waiting-manual, exit 62).
- Confirm and Check recovery: a non-zero exit is a finding, the run goes on. Recover: a non-zero exit
  stops the run (failed, exit 60). The run is `recovered` when every Check recovery command exits 0
  (else not-recovered, exit 63).
- The run's record is saved after every block; a run killed mid-step resumes at that step's start.
- Evidence records: runbook.start, runbook.step (each finished step), runbook.pause, runbook.resume,
  runbook.end; the actor is the operator (the setting `operator`, ERPCTL_OPERATOR; else LOGNAME, else the user).
Failpoint: runbook.step.before (controlplane/faults.py), before each step's first block."""

from __future__ import annotations

import getpass
import hashlib
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

import click

from ..errors import (DiskFull, RunbookNotRecovered, RunbookStepFailed, RunbookWaitingConfirmation, RunbookWaitingManual,
                      RunNotResumable)
from ..evidence import EvidenceLog
from ..faults import failpoint
from . import records
from .environment import Redactor, child_env, erpctl_program, installation_env, substitute
from .parse import Runbook, check_runnable, parse_runbook
from .records import RunRecord, now
from .report import OUTPUT_TAIL, Reporter

EXIT_FAILED = RunbookStepFailed.exit_code
EXIT_CONFIRMATION = RunbookWaitingConfirmation.exit_code
EXIT_MANUAL = RunbookWaitingManual.exit_code
EXIT_NOT_RECOVERED = RunbookNotRecovered.exit_code
OUTPUT_LINGER_SECONDS = 2.0


def operator() -> str:
    try:
        return os.environ.get("LOGNAME") or os.environ.get("USER") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return str(os.getuid())


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plan(rb: Runbook, run_env: dict, reporter: Reporter) -> int:
    """--dry-run: each step and what it would run, variables substituted; nothing runs, nothing is written."""
    env = child_env(run_env)
    redact = Redactor(env)
    reporter.say(f"runbook {rb.name}: {rb.title}\ndry run: nothing runs, nothing is recorded")
    for step in rb.steps:
        blocks = [{"lang": b.lang, "confirm": b.confirm,
                   "commands": [redact(substitute(c, env)) for c in (b.commands if b.lang == "erpctl" else [b.code])]}
                  for b in step.executed]
        reporter.plan(step, blocks)
    return 0


class Engine:
    def __init__(self, inst, rb: Runbook, rec: RunRecord, reporter: Reporter, *, interactive: bool,
                 done: bool = False):
        self.inst, self.rb, self.rec, self.reporter = inst, rb, rec, reporter
        self.interactive, self.done = interactive, done
        self.env = child_env(rec.env)
        self.redact = Redactor(self.env)
        self.log = EvidenceLog(inst.data_dir)
        self.pending: list[tuple[str, str, dict]] = []   # evidence records not written yet (a full disk)
        self.unwritten: str | None = None                # why the record or evidence cannot be written now

    # -- records --
    def _save(self) -> None:
        """Save the run's record, and the evidence records waiting. A full disk (DiskSpaceLow's own condition)
        does not stop the run: they wait in memory and are written at the next save with room."""
        try:
            records.save(self.inst.data_dir, self.rec)
            self._flush()
        except OSError as exc:
            self._cannot_write(exc)

    def _evidence(self, record_kind: str, outcome: str, data: dict) -> None:
        self.pending.append((record_kind, outcome, {"run": self.rec.id, "runbook": self.rec.runbook, **data}))
        try:
            self._flush()
        except OSError as exc:
            self._cannot_write(exc)

    def _flush(self) -> None:
        while self.pending:
            kind, outcome, data = self.pending[0]
            self.log.append(kind, data, actor=self.rec.operator, outcome=outcome)
            self.pending.pop(0)
        if self.unwritten is not None:
            self.unwritten = None
            self.reporter.warning("the run's record and evidence are written again")

    def _cannot_write(self, exc: OSError) -> None:
        if self.unwritten is None:
            self.reporter.warning(f"cannot write the run's record or evidence in {self.inst.data_dir} ({exc}): "
                                  "the run goes on, and they are written as soon as there is room")
        self.unwritten = str(exc)

    # -- the walk --
    def walk(self) -> int:
        for step in self.rb.steps[self.rec.step - 1:]:
            code = self._step(step)
            if code is not None:
                return code
        return self._end()

    def _step(self, step) -> int | None:
        rec = self.rec
        rec.current = rec.current or {"started_at": now(), "commands": []}
        self._save()
        self.reporter.step(step)
        if step.manual:
            how = self._manual(step)
            if how is None:
                return self._pause(records.WAITING_MANUAL, f"manual step {step.number} ({step.title})",
                                   f"erpctl runbook resume {rec.id} --done", EXIT_MANUAL, step.title)
            rec.current["confirmation"] = how
            return self._finish_step(step, "done")
        failpoint("runbook.step.before")
        blocks = step.executed
        for i in range(rec.block, len(blocks)):
            confirmation = None
            if blocks[i].confirm:
                confirmation = self._confirm(blocks[i])
                if confirmation is None:
                    return self._pause(records.WAITING_CONFIRMATION,
                                       f"confirmation of step {step.number} ({step.title}), block {i + 1}",
                                       f"erpctl runbook resume {rec.id} --yes", EXIT_CONFIRMATION, step.title)
            failed = self._block(step, blocks[i], confirmation)
            rec.block = i + 1
            self._save()
            if failed:
                return self._fail(step)
        findings = any(c["exit_code"] != 0 for c in rec.current["commands"])
        return self._finish_step(step, "finding" if findings else ("ok" if blocks else "shown"))

    def _finish_step(self, step, outcome: str) -> None:
        rec = self.rec
        result = self._step_result(step, outcome)
        self._evidence("runbook.step", outcome, result)
        self.reporter.step_done(result | {"commands": rec.current.get("commands", [])})
        rec.steps.append(result)
        rec.step, rec.block, rec.current = step.number + 1, 0, {}
        self._save()
        return None

    def _step_result(self, step, outcome: str) -> dict:
        cur = self.rec.current
        commands = [{k: v for k, v in c.items() if k != "output"} for c in cur.get("commands", [])]
        out = {"step": step.number, "title": step.title, "kind": step.kind, "outcome": outcome,
               "started_at": cur.get("started_at"), "ended_at": now(), "commands": commands}
        for key in ("confirmation", "interrupted"):
            if key in cur:
                out[key] = cur[key]
        return out

    # -- asking --
    def _confirm(self, block) -> str | None:
        if self.rec.yes:
            return "--yes"
        self.reporter.block(block, self._shown(block))
        if not self.interactive:
            return None
        if click.confirm("   run this block?", default=False, err=True):
            return "typed yes"
        return None

    def _manual(self, step) -> str | None:
        if self.done:  # resume --done of the run waiting at this step; a later manual step waits again
            self.done = False
            return "resume --done"
        if not self.interactive:
            return None
        while True:
            answer = click.prompt(f"   step {step.number} is manual: type 'done' once it is done, or 'pause' to "
                                  "stop the run here", err=True, default="", show_default=False).strip().lower()
            if answer == "done":
                return "typed done"
            if answer == "pause":
                return None

    # -- running --
    def _shown(self, block) -> str:
        return self.redact(block.code if block.lang == "sh" else "\n".join(block.commands))

    def _block(self, step, block, confirmation: str | None) -> bool:
        """Run one block; True when the run must stop (a Recover command failed)."""
        if block.lang == "sh":
            units = [(["sh", "-eu", "-c", block.code], block.code)]
            if confirmation != "typed yes":  # else shown when asked
                self.reporter.block(block, self._shown(block))
        else:
            units = [([erpctl_program(), *shlex.split(line)[1:]], line) for line in block.commands]
        for argv, text in units:
            if block.lang == "erpctl":
                self.reporter.command(self.redact(text))
            result = self._execute(argv)
            result.update(lang=block.lang, command=self.redact(text), confirm=block.confirm,
                          confirmation=confirmation)
            self.rec.current["commands"].append(result)
            self.reporter.exited(result["exit_code"], step.kind)
            if result["exit_code"] != 0:
                self.rec.findings.append({"step": step.number, "kind": step.kind, "command": result["command"],
                                          "exit_code": result["exit_code"]})
                if step.kind == "Recover":
                    return True
        return False

    def _execute(self, argv: list[str]) -> dict:
        """Run one command, its output shown (secrets masked) as it comes. A background process the command
        left holding its output is not waited for beyond OUTPUT_LINGER_SECONDS after the command exits."""
        started = time.monotonic()
        sha = hashlib.sha256()
        tail: list[str] = []
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=self.env)
        except OSError as exc:
            proc, tail = None, [self.redact(f"cannot run {argv[0]}: {exc}\n")]
            self.reporter.line(tail[0])
            sha.update(tail[0].encode())
        if proc is not None:
            open_ = threading.Event()
            open_.set()
            reader = threading.Thread(target=self._pump, args=(proc.stdout, sha, tail, open_), daemon=True)
            reader.start()
            proc.wait()
            reader.join(OUTPUT_LINGER_SECONDS)
            open_.clear()  # whatever comes later is not this command's
        return {"exit_code": 127 if proc is None else proc.returncode, "output_sha256": sha.hexdigest(),
                "seconds": round(time.monotonic() - started, 3), "output": "".join(tail)}

    def _pump(self, stream, sha, tail: list[str], open_: threading.Event) -> None:
        size = 0
        for raw in stream:
            if not open_.is_set():
                break
            line = self.redact(raw.decode("utf-8", "replace"))
            sha.update(line.encode())
            self.reporter.line(line)
            tail.append(line)
            size += len(line)
            while size > OUTPUT_TAIL and len(tail) > 1:
                size -= len(tail.pop(0))
        stream.close()

    # -- ends --
    def _pause(self, status: str, waiting: str, how: str, code: int, title: str) -> int:
        rec = self.rec
        rec.status, rec.waiting = status, waiting
        self._save()
        self._evidence("runbook.pause", "waiting", {"step": rec.step, "status": status, "waiting": waiting})
        if self.unwritten is not None:
            raise DiskFull(f"run {rec.id} cannot pause at step {rec.step}: its record cannot be written "
                           f"({self.unwritten}), so it could not be resumed",
                           fix="Free space in the data directory's filesystem, then start the runbook again.")
        self.reporter.paused(rec, how, code, title)
        return code

    def _fail(self, step) -> int:
        rec = self.rec
        rec.status = records.FAILED
        result = self._step_result(step, "failed")
        self._evidence("runbook.step", "failed", result)
        self.reporter.step_done(result | {"commands": rec.current.get("commands", [])})
        rec.steps.append(result)
        rec.current = {}
        return self._close(EXIT_FAILED)

    def _end(self) -> int:
        rec = self.rec
        unrecovered = [f for f in rec.findings if f["kind"] == "Check recovery"]
        rec.status = records.NOT_RECOVERED if unrecovered else records.RECOVERED
        return self._close(EXIT_NOT_RECOVERED if unrecovered else 0)

    def _close(self, code: int) -> int:
        rec = self.rec
        rec.ended_at, rec.waiting = now(), None
        self._save()
        self._evidence("runbook.end", rec.status, {"status": rec.status, "step": rec.step, "findings": rec.findings,
                                                   "exit_code": code})
        if self.unwritten is not None:
            self.reporter.warning(f"the run's record and {len(self.pending)} evidence record(s) could not be written "
                                  f"({self.unwritten}): this output is the run's only log")
        self.reporter.end(rec, code)
        return code


def start(inst, rb: Runbook, params: dict, reporter: Reporter, *, yes: bool, interactive: bool) -> int:
    """A new run of `rb`: its record, runbook.start, then the walk. The exit code."""
    rec = RunRecord(id=records.new_id(), runbook=rb.name, path=str(rb.path), runbook_sha256=digest(rb.path),
                    env={**installation_env(inst), **params}, params=sorted(params), yes=yes, operator=inst.get("operator") or operator(),
                    started_at=now(), pid=os.getpid())
    with records.holding(inst.data_dir, rec.id, new=True):
        engine = Engine(inst, rb, rec, reporter, interactive=interactive)
        shown = engine.redact.params(params)
        engine._save()
        engine._evidence("runbook.start", "ok", {"path": rec.path, "runbook_sha256": rec.runbook_sha256,
                                                 "params": shown, "yes": yes, "steps": len(rb.steps)})
        reporter.start(rec, rb.title, shown)
        return engine.walk()


def resume(inst, run_id: str, reporter: Reporter, *, yes: bool, done: bool, interactive: bool) -> int:
    """Go on with a paused or interrupted run: an interrupted step runs again from its start."""
    records.load(inst.data_dir, run_id)
    with records.holding(inst.data_dir, run_id):
        rec = records.load(inst.data_dir, run_id)  # again, under the lock
        if rec.status in records.FINISHED:
            raise RunNotResumable(f"runbook run {run_id} has finished ({rec.status})",
                                  fix=f"Start a new run: erpctl runbook run {rec.runbook}")
        rb = _same_runbook(rec)
        was, interrupted = rec.status, rec.status == records.RUNNING
        if interrupted:
            rec.block = 0
            rec.current = {"started_at": now(), "commands": [], "interrupted": True}
            rec.findings = [f for f in rec.findings if f["step"] != rec.step]
        rec.status, rec.pid, rec.yes, rec.waiting = records.RUNNING, os.getpid(), rec.yes or yes, None
        engine = Engine(inst, rb, rec, reporter, interactive=interactive, done=done and was == records.WAITING_MANUAL)
        engine._save()
        engine._evidence("runbook.resume", "ok", {"step": rec.step, "interrupted": interrupted, "was": was,
                                                  "yes": yes, "done": done})
        reporter.resumed(rec, rb.steps[rec.step - 1].title, interrupted, was)
        return engine.walk()


def _same_runbook(rec: RunRecord) -> Runbook:
    path = Path(rec.path)
    if not path.is_file() or digest(path) != rec.runbook_sha256:
        raise RunNotResumable(f"the runbook of run {rec.id} ({path}) is gone or changed since the run started",
                              fix=f"Start a new run: erpctl runbook run {rec.runbook}")
    rb = parse_runbook(path)
    check_runnable(rb)
    return rb
