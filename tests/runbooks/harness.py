"""Runs a runbook the way runbooks/README.md says a runbook engine runs it, step by step and in order.

- an ```` ```erpctl ```` block: each line is one erpctl command (the erpctl beside sys.executable), `#` lines
  are comments; a line is split like a shell splits it (quotes), never given to a shell;
- an ```` ```sh ```` block: one unit, `sh -eu` reading the block on its standard input;
- a `confirm` block runs as if the engineer confirmed it (its commands pass their own --yes as written);
- in Confirm and Check recovery steps a non-zero exit is a finding and the run goes on; in Recover
  steps a non-zero exit stops the run;
- a Recover step without a block is a manual step: `on_manual(step)` does the people's work, then the
  run goes on.

Blocks find the installation through the README's environment table (ERPCTL_DATA_DIR, ERP_URL, ...),
which the caller passes as `env`; `erpctl` on PATH (for `sh` blocks) is the same erpctl.

`run_runbook` is the one function to switch when the product's engine exists: run
`erpctl runbook run NAME --yes --json`, answer each manual step with `on_manual` then
`erpctl runbook resume RUN_ID --done`, and map the engine's step log onto RunResult.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.controlplane.cli_helpers import HERMETIC, erpctl_path
from controlplane.runbook.parse import Step, parse_runbook
from tests.monitors.helpers import RUNBOOKS

COMMAND_TIMEOUT = 180.0
# The README's environment table: what the caller sets from the live installation.
README_ENV = ("ERPCTL_DATA_DIR", "ERPCTL_DATABASE_URL", "ERP_URL", "OPS_URL", "ERPCTL_BACKUP_PASSPHRASE",
              "ERPCTL_BACKUP_KEY_FILE", "ERPCTL_PROMETHEUS_URL", "ERPCTL_ALERTMANAGER_URL", "ERP_TOKEN")
# Variables of the developer's own environment that would point a block elsewhere.
FOREIGN = (*README_ENV, *HERMETIC, "ERPCTL_BACKUP_REPO", "ERPCTL_ERP_URL")


@dataclass
class CommandResult:
    lang: str            # "erpctl" or "sh"
    command: str         # the erpctl line, or the whole sh block
    exit_code: int
    output: str          # stdout then stderr
    seconds: float
    confirm: bool = False


@dataclass
class StepResult:
    number: int
    title: str
    kind: str            # "What it means", "Confirm", "Recover", "Check recovery"
    manual: bool = False
    commands: list[CommandResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CommandResult]:
        return [c for c in self.commands if c.exit_code != 0]


@dataclass
class RunResult:
    name: str
    steps: list[StepResult] = field(default_factory=list)
    stopped_at: int | None = None    # the Recover step whose command failed, when the run stopped

    def of_kind(self, kind: str) -> list[StepResult]:
        return [s for s in self.steps if s.kind == kind]

    @property
    def findings(self) -> list[CommandResult]:
        return [c for s in self.of_kind("Confirm") for c in s.failed]

    def report(self) -> str:
        """The run as an engineer reads its log: every step, every command, its exit code and output."""
        out = [f"runbook {self.name}" + (f" (stopped at step {self.stopped_at})" if self.stopped_at else "")]
        for s in self.steps:
            out.append(f"## {s.number}. {s.title}" + ("  [manual step done]" if s.manual else ""))
            for c in s.commands:
                out.append(f"  $ {c.command.strip()}  -> exit {c.exit_code} ({c.seconds:.1f} s)")
                lines = c.output.rstrip().splitlines()
                out += ["    | " + line for line in (lines[:30] if c.exit_code else lines[-15:])]
        return "\n".join(out)


def run_runbook(name: str, env: dict[str, str], *, on_manual: Callable[[StepResult], None] | None = None,
                runbooks: Path = RUNBOOKS) -> RunResult:
    """Run runbooks/<name>.md in order against the installation `env` names; every step's commands
    with their exit codes and output."""
    rb = parse_runbook(runbooks / f"{name}.md")
    full_env = block_env(env)
    result = RunResult(name)
    for step in rb.steps:
        done = StepResult(step.number, step.title, step.kind)
        result.steps.append(done)
        if step.kind == "Recover" and not _executable(step):
            done.manual = True
            if on_manual is not None:
                on_manual(done)
            continue
        for block in step.blocks:
            for cmd in _commands(block):
                res = _run(cmd, block.lang, full_env, confirm="confirm" in block.flags)
                done.commands.append(res)
                if res.exit_code != 0 and step.kind == "Recover":
                    result.stopped_at = step.number
                    return result
    return result


def block_env(env: dict[str, str]) -> dict[str, str]:
    """The process environment for blocks: this environment without anything naming another
    installation, the caller's README variables, and this erpctl first on PATH."""
    out = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    out.update({k: v for k, v in env.items() if v is not None})
    bindir = str(Path(erpctl_path()).parent)
    out["PATH"] = bindir + os.pathsep + out.get("PATH", "/usr/bin:/bin")
    return out


def _executable(step: Step) -> bool:
    return any(b.lang in ("erpctl", "sh") for b in step.blocks)


def _commands(block) -> list[str]:
    if block.lang == "erpctl":
        return block.commands
    if block.lang == "sh":
        return [block.code]
    return []  # illustration (text, json...): never run


def _cwd(env: dict[str, str]) -> str | None:
    """Beside the data directory (where an engineer would stand), not inside it."""
    data_dir = env.get("ERPCTL_DATA_DIR")
    return str(Path(data_dir).parent) if data_dir else None


def _run(command: str, lang: str, env: dict[str, str], *, confirm: bool) -> CommandResult:
    if lang == "erpctl":
        argv = shlex.split(command)
        assert argv[0] == "erpctl", f"an erpctl block's line that is not an erpctl command: {command!r}"
        args, stdin = [erpctl_path(), *argv[1:]], None
    else:
        args, stdin = ["sh", "-eu"], command
    t0 = time.monotonic()
    try:
        feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT, cwd=_cwd(env),
                           **feed)
        code, output = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = 124, f"{exc.stdout or ''}{exc.stderr or ''}\n(killed after {COMMAND_TIMEOUT:g} s)"
    return CommandResult(lang, command, code, output, time.monotonic() - t0, confirm)
