"""Drill scenarios: runbooks/drills/<name>.yaml, validated at load against one schema.

A scenario declares its objectives before anything runs (detection, RTO, RPO), the steady-state
checks, the fault, what is expected to detect it (items of `erpctl status`: a failing probe, the ERP
down, an alert, invariant violations), the runbook that recovers (run by the runbook engine with
--yes), the checks after recovery and the clean-up that always runs. runbooks/drills/README.md
documents every key; a bad file is refused with its name, the key and the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import RunbookNotFound, ScenarioInvalid, ScenarioNotFound
from ..runbook.parse import find as find_runbook

FAULTS = ("kill-erp", "hang-erp", "corrupt-database", "delete-rows", "disk-full", "backup-store-unreachable",
          "upgrade-killed", "field-key-lost")
CHECKS = ("readyz", "invariants", "business-write", "status", "field-key", "release")
CLEANUPS = ("resume-erp", "store-back", "maintenance-off")
# What a drill may do for people at a runbook's manual step or before the recovery starts.
ACTIONS = ("maintenance-on", "store-back", "wait-ready")
DETECTIONS = ("probe", "alert-pending", "alert-firing")
NAME = r"^[a-z0-9][a-z0-9-]{1,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objectives(_Strict):
    detection_seconds: float = Field(gt=0, description="fault -> the expected detection firing")
    rto_seconds: float = Field(gt=0, description="fault -> first acknowledged business write after recovery")
    rpo_writes: int = Field(ge=0, description="acknowledged writes that may be missing after recovery")
    rpo_seconds: float = Field(ge=0, description="age of the newest surviving write at the fault, when writes are lost")
    detection_by: Literal[DETECTIONS] = Field(  # type: ignore[valid-type]
        "probe", description="which detection the detection objective judges: the probes (`erpctl status`, "
                             "detect.commands), or the expected alert (detect.alert) pending or firing in "
                             "Prometheus (the probes where Prometheus is not installed)")


class Fault(_Strict):
    kind: Literal[FAULTS]  # type: ignore[valid-type]
    table: str | None = Field(None, description="delete-rows: the table; corrupt-database: the table or index "
                                                "whose root page is damaged (SQLite)")
    pg_table: str | None = Field(None, description="corrupt-database on PostgreSQL: the table dropped")
    after_seconds: float = Field(1.0, ge=0, description="workload time before the fault")
    failpoint: str | None = Field(None, description="upgrade-killed: the failpoint the upgrade is held at "
                                                    "(paused) when it is killed")


class Detect(_Strict):
    status: list[str] = Field(default_factory=list,
                              description="`erpctl status` attention items (prefixes), any of them")
    commands: list[str] = Field(default_factory=list,
                                description="erpctl commands (`field-key check`) whose non-zero exit detects")
    alert: str | None = Field(None, description="the shipped alert (monitors/alerts.yml) expected to fire, "
                                                "evaluated by the drill's own Prometheus where it is installed")
    timeout_seconds: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _something(self):
        if not self.status and not self.commands:
            raise ValueError("name at least one `erpctl status` item (status) or erpctl command (commands): "
                             "they detect where Prometheus is not installed")
        if self.alert is not None:
            from ..monitoring.prometheus_config import alert_names
            if self.alert not in alert_names():
                raise ValueError(f"no shipped alert {self.alert!r} (monitors/alerts.yml)")
        return self


class Recover(_Strict):
    runbook: str = Field(min_length=1)
    params: dict[str, str] = Field(default_factory=dict)
    discard_writes: bool = Field(False, description="pass DISCARD_WRITES=<count from restore --dry-run>")
    before: list[Literal[ACTIONS]] = Field(default_factory=list)  # type: ignore[valid-type]
    manual: list[Literal[ACTIONS]] = Field(default_factory=list)  # type: ignore[valid-type]
    timeout_seconds: float = Field(300.0, gt=0)


class Scenario(_Strict):
    name: str = Field(pattern=NAME)
    title: str = Field(min_length=3)
    description: str = ""
    destructive: bool
    backup_in_sandbox: bool = Field(False, description="take a backup in the sandbox during steady state")
    schedule: dict[str, str] = Field(default_factory=dict, description="the sandbox's [schedule] (job id: every)")
    objectives: Objectives
    steady_state: list[Literal[CHECKS]] = Field(min_length=1)  # type: ignore[valid-type]
    fault: Fault
    detect: Detect
    recover: Recover
    after: list[Literal[CHECKS]] = Field(min_length=1)  # type: ignore[valid-type]
    cleanup: list[Literal[CLEANUPS]] = Field(default_factory=list)  # type: ignore[valid-type]


@dataclass(frozen=True)
class Loaded:
    scenario: Scenario
    path: Path
    sha256: str


FIXES = {
    "missing": "add the key (runbooks/drills/README.md lists every key)",
    "extra_forbidden": "remove it or correct its spelling (runbooks/drills/README.md lists every key)",
    "literal_error": "use one of the values named",
}


def _explain(path: Path, exc: ValidationError) -> ScenarioInvalid:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    fix = FIXES.get(err["type"], "correct the value (runbooks/drills/README.md)")
    return ScenarioInvalid(f"{path.name}: key {key}: {err['msg']}", fix=f"In {path}, {key}: {fix}.")


def load(path: Path, runbooks_dir: Path | None = None) -> Loaded:
    """The scenario in `path`, validated; its runbook must exist in `runbooks_dir` (when given)."""
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ScenarioInvalid(f"{path.name}: not YAML: {exc}", fix=f"Correct the YAML syntax of {path}.") from exc
    if not isinstance(data, dict):
        raise ScenarioInvalid(f"{path.name}: key (top level): a mapping is expected",
                              fix=f"Write {path} as a YAML mapping (runbooks/drills/README.md).")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc) from exc
    if scenario.name != path.stem:
        raise ScenarioInvalid(f"{path.name}: key name: {scenario.name!r} is not the file's name",
                              fix=f"In {path}, name: write {path.stem!r} (or rename the file).")
    if runbooks_dir is not None:
        try:
            find_runbook(runbooks_dir, scenario.recover.runbook)
        except RunbookNotFound as exc:
            raise ScenarioInvalid(f"{path.name}: key recover.runbook: no runbook {scenario.recover.runbook!r}",
                                  fix=f"In {path}, recover.runbook: name a runbook of 'erpctl runbook list'.") from exc
    return Loaded(scenario, path, hashlib.sha256(raw).hexdigest())


def directory(runbooks_dir: Path) -> Path:
    return Path(runbooks_dir) / "drills"


def paths(runbooks_dir: Path) -> list[Path]:
    return sorted(directory(runbooks_dir).glob("*.yaml"))


def find(runbooks_dir: Path, name: str) -> Loaded:
    path = directory(runbooks_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in paths(runbooks_dir)) or "none"
        raise ScenarioNotFound(f"no drill scenario {name!r} in {directory(runbooks_dir)}",
                               fix=f"Name one of: {known} (erpctl drill scenarios).")
    return load(path, runbooks_dir)


def load_all(runbooks_dir: Path) -> list[Loaded]:
    return [load(p, runbooks_dir) for p in paths(runbooks_dir)]
