"""What a run shows while it goes: human text on stdout, or with --json one JSON object a line.

JSON lines (each with "event"): start (run id, runbook, params with secrets masked), resume (run id,
step, interrupted), step (a finished step: number, title, kind, outcome, started_at, ended_at and its
commands, each with lang, command, confirm, confirmation, exit_code, output_sha256, seconds and output,
secrets masked, the last OUTPUT_TAIL characters), plan (--dry-run: a step and what would run), paused
(status, step, its title, waiting, how to go on), warning (message: the run's record or evidence cannot be
written now, or can again), end (status, result, findings, exit_code)."""

from __future__ import annotations

import json
import sys
import textwrap

OUTPUT_TAIL = 65536


class Reporter:
    def __init__(self, as_json: bool, out=None):
        self.json = as_json
        self.out = out or sys.stdout

    def _emit(self, event: str, **data) -> None:
        self.out.write(json.dumps({"event": event, **data}, default=str) + "\n")
        self.out.flush()

    def warning(self, text: str) -> None:
        if self.json:
            self._emit("warning", message=text)
        else:
            self.say(f"   warning: {text}")

    def say(self, text: str = "") -> None:
        if not self.json:
            self.out.write(text + "\n")
            self.out.flush()

    def start(self, rec, runbook_title: str, params: dict) -> None:
        if self.json:
            self._emit("start", run=rec.id, runbook=rec.runbook, title=runbook_title, path=rec.path,
                       params=params, operator=rec.operator, started_at=rec.started_at)
            return
        self.say(f"runbook {rec.runbook}: {runbook_title}")
        self.say(f"run {rec.id} by {rec.operator}" + (f", params {params}" if params else ""))

    def resumed(self, rec, title: str, interrupted: bool, was: str) -> None:
        if self.json:
            self._emit("resume", run=rec.id, runbook=rec.runbook, step=rec.step, interrupted=interrupted, was=was)
            return
        if interrupted:
            self.say(f"run {rec.id} ({rec.runbook}) was interrupted during step {rec.step} ({title}): "
                     f"running step {rec.step} again from its start")
        else:
            self.say(f"run {rec.id} ({rec.runbook}) resumes at step {rec.step} ({title}), which was {was}")

    def step(self, step) -> None:
        self.say(f"\n== {step.number}. {step.title}")
        if step.prose:
            self.say(textwrap.indent(step.prose, "   "))

    def block(self, block, shown: str) -> None:
        if self.json:
            return
        tag = f"```{block.lang}{' confirm' if block.confirm else ''}"
        self.say(f"   {tag}\n" + textwrap.indent(shown.rstrip("\n"), "   $ " if block.lang == "erpctl" else "   | "))

    def command(self, shown: str) -> None:
        self.say(f"   $ {shown}")

    def line(self, text: str) -> None:
        if not self.json:
            self.out.write("     " + text if text.strip() else "\n")
            self.out.flush()

    def exited(self, code: int, kind: str) -> None:
        if code == 0:
            self.say("   -> exit 0")
        elif kind == "Recover":
            self.say(f"   -> exit {code}: the fix did not work; the run stops here")
        else:
            self.say(f"   -> exit {code}: a finding (logged); the run goes on")

    def step_done(self, result: dict) -> None:
        if self.json:
            self._emit("step", **result)

    def plan(self, step, blocks: list[dict]) -> None:
        if self.json:
            self._emit("plan", number=step.number, title=step.title, kind=step.kind, manual=step.manual,
                       blocks=blocks)
            return
        self.step(step)
        if step.manual:
            self.say("   (manual step: the run waits until the engineer says it is done)")
        for b in blocks:
            head = f"   would run ```{b['lang']}{' confirm (asks first)' if b['confirm'] else ''}"
            self.say(head + "\n" + textwrap.indent("\n".join(b["commands"]), "   $ "))

    def paused(self, rec, how: str, code: int, title: str = "") -> None:
        if self.json:
            self._emit("paused", run=rec.id, status=rec.status, step=rec.step, title=title, waiting=rec.waiting,
                       resume=how, exit_code=code)
            return
        self.say(f"\nrun {rec.id} paused: {rec.waiting} (exit {code})\n   to go on: {how}")

    def end(self, rec, code: int) -> None:
        if self.json:
            self._emit("end", run=rec.id, runbook=rec.runbook, status=rec.status, findings=rec.findings,
                       exit_code=code, started_at=rec.started_at, ended_at=rec.ended_at)
            return
        self.say(f"\nrun {rec.id} {rec.status}" + (f" at step {rec.step}" if rec.status == "failed" else "")
                 + f"; {len(rec.findings)} finding(s)" + f" (exit {code})")
        for f in rec.findings:
            self.say(f"   finding: step {f['step']} ({f['kind']}): {f['command'].splitlines()[0]} -> exit "
                     f"{f['exit_code']}")
