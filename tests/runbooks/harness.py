"""The one way tests run a runbook: the product's engine, driven as an operator's automation drives it
(runbooks/README.md, "Automation"):

    erpctl runbook run NAME --yes --json </dev/null          # to the end, or exit 62 at a manual step
    erpctl runbook resume RUN_ID --done --json </dev/null    # after the people's work, at each manual step

`env` is the environment of those commands (the README's variables: ERPCTL_DATA_DIR, ERP_TOKEN...);
the engine sets the blocks' ERPCTL_DATA_DIR, ERPCTL_DATABASE_URL, ERP_URL, OPS_URL and the alerting
URLs from the installation itself. `params` are passed as --param NAME=VALUE. A manual step calls
`on_manual(step)` (the test does the people's work) before the resume. The RunResult is read from the
engine's JSON lines: every step with its kind, commands, exit codes and output (secrets masked), the
run's id, status and exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from controlplane import layout
from tests.controlplane.cli_helpers import HERMETIC, erpctl_path

RUN_TIMEOUT = 600.0
EXIT_MANUAL = 62
# Variables of the developer's own environment that would point the engine or a block at another
# installation (the caller's `env` sets those it means).
FOREIGN = (*HERMETIC, "ERP_URL", "OPS_URL", "ERPCTL_ERP_URL", "ERPCTL_PROMETHEUS_URL", "ERPCTL_ALERTMANAGER_URL",
           "ERPCTL_BACKUP_REPO", "ERPCTL_BACKUP_KEY_FILE", "ERPCTL_RUNBOOKS_DIR", "ERP_TOKEN")


@dataclass
class CommandResult:
    lang: str            # "erpctl" or "sh"
    command: str         # the erpctl line, or the whole sh block (secrets masked)
    exit_code: int
    output: str          # stdout and stderr as they came (secrets masked)
    seconds: float
    confirm: bool = False


@dataclass
class StepResult:
    number: int
    title: str
    kind: str            # "What it means", "Confirm", "Recover", "Check recovery"
    manual: bool = False
    outcome: str = ""    # the engine's: shown, ok, finding, done, failed
    commands: list[CommandResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CommandResult]:
        return [c for c in self.commands if c.exit_code != 0]


@dataclass
class RunResult:
    name: str
    steps: list[StepResult] = field(default_factory=list)
    stopped_at: int | None = None    # the Recover step whose command failed, when the run stopped
    run_id: str | None = None
    status: str | None = None        # the engine's: recovered, not-recovered, failed
    exit_code: int | None = None     # the last engine command's
    events: list[dict] = field(default_factory=list)
    stderr: str = ""

    def of_kind(self, kind: str) -> list[StepResult]:
        return [s for s in self.steps if s.kind == kind]

    @property
    def findings(self) -> list[CommandResult]:
        return [c for s in self.of_kind("Confirm") for c in s.failed]

    def ran(self, kind: str | None = None) -> list[CommandResult]:
        """Every command that ran (of the steps of `kind`), in order."""
        return [c for s in self.steps if kind in (None, s.kind) for c in s.commands]

    def command(self, kind: str, command: str) -> CommandResult:
        """The command of a step of `kind` written `command` (the first one)."""
        found = [c for c in self.ran(kind) if c.command.strip() == command]
        assert found, f"no {kind} command {command!r} ran:\n{self.report()}"
        return found[0]

    def report(self) -> str:
        """The run as an engineer reads its log: every step, every command, its exit code and output."""
        out = [f"runbook {self.name}: run {self.run_id} {self.status} (exit {self.exit_code})"
               + (f", stopped at step {self.stopped_at}" if self.stopped_at else "")]
        for s in self.steps:
            out.append(f"## {s.number}. {s.title}" + ("  [manual step done]" if s.manual else ""))
            for c in s.commands:
                out.append(f"  $ {c.command.strip()}  -> exit {c.exit_code} ({c.seconds:.1f} s)")
                lines = c.output.rstrip().splitlines()
                out += ["    | " + line for line in (lines[:30] if c.exit_code else lines[-15:])]
        if self.stderr.strip():
            out.append("engine stderr:\n" + self.stderr[-3000:])
        return "\n".join(out)

    def evidence(self, data_dir) -> list[dict]:
        """The evidence log's records of this run."""
        path = layout.path(data_dir, "evidence")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if (r.get("data") or {}).get("run") == self.run_id]


def run_runbook(name: str, env: dict[str, str], *, on_manual: Callable[[StepResult], None] | None = None,
                params: dict[str, str] | None = None, runbooks: Path | None = None) -> RunResult:
    """Run the runbook `name` with the product's engine against the installation `env` names, answering
    its manual steps with `on_manual`; every step's commands with their exit codes and output."""
    proc_env = block_env(env)
    extra = [f"--param={k}={v}" for k, v in (params or {}).items()]
    extra += ["--runbooks-dir", str(runbooks)] if runbooks else []
    result = RunResult(name)
    paused = _engine(["runbook", "run", name, "--yes", "--json", *extra], proc_env, result)
    while paused is not None:
        step = StepResult(paused["step"], paused.get("title", ""), "Recover", manual=True)
        if on_manual is not None:
            on_manual(step)
        paused = _engine(["runbook", "resume", result.run_id, "--done", "--json"], proc_env, result)
    return result


def _engine(args: list[str], env: dict[str, str], result: RunResult) -> dict | None:
    """One engine command; its JSON lines into `result`. The paused event when it paused at a manual step."""
    p = subprocess.run([erpctl_path(), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                       cwd=_cwd(env), timeout=RUN_TIMEOUT)
    result.exit_code, result.stderr = p.returncode, result.stderr + p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert events, f"erpctl {' '.join(args)} -> {p.returncode}, no JSON line\n{p.stdout}\n{p.stderr}"
    result.events += events
    paused = None
    for ev in events:
        if ev["event"] in ("start", "resume"):
            result.run_id = ev["run"]
        elif ev["event"] == "step":
            result.steps.append(_step(ev))
            if ev["outcome"] == "failed":
                result.stopped_at = ev["step"]
        elif ev["event"] == "end":
            result.status = ev["status"]
        elif ev["event"] == "paused":
            paused = ev
    if paused is not None:
        assert p.returncode == EXIT_MANUAL and paused["status"] == "waiting-manual", result.report()
    else:
        assert result.status is not None, f"the engine neither ended nor paused:\n{result.report()}"
    return paused


def _step(ev: dict) -> StepResult:
    commands = [CommandResult(c["lang"], c["command"], c["exit_code"], c.get("output", ""), c["seconds"],
                              bool(c.get("confirm"))) for c in ev.get("commands", [])]
    return StepResult(ev["step"], ev["title"], ev["kind"], manual=ev["outcome"] == "done", outcome=ev["outcome"],
                      commands=commands)


def block_env(env: dict[str, str]) -> dict[str, str]:
    """The engine's environment: this one without anything naming another installation, the caller's
    README variables, and this erpctl first on PATH."""
    out = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    out.update({k: v for k, v in env.items() if v is not None})
    bindir = str(Path(erpctl_path()).parent)
    out["PATH"] = bindir + os.pathsep + out.get("PATH", "/usr/bin:/bin")
    return out


def _cwd(env: dict[str, str]) -> str | None:
    """Beside the data directory (where an engineer would stand), not inside it."""
    data_dir = env.get("ERPCTL_DATA_DIR")
    return str(Path(data_dir).parent) if data_dir else None
