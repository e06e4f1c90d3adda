"""A drill on the live installation (`erpctl drill run SCENARIO --target live`): only the faults that destroy
nothing and restore nothing (LIVE_FAULTS: the ERP process killed or hung, which the supervisor of the live
`erpctl up` and the ErpDown runbook recover); every other fault is refused before anything runs (exit 78,
naming why). It runs only under two approvals in a maintenance window containing now (approvals.py).

What differs from a sandbox drill: no sandbox is built or restored; the live `erpctl up` must be serving;
the workload writes through the live API as a drill-only user (`drill-<id>`, role admin) created at the
start and deactivated by the clean-up, which always runs. Its writes are LEFT in place, marked as drill
data: they are all in a warehouse, a customer, a supplier and a product of their own named "Drill ...
<tag>" (workload.py), the audit log names the drill user as their author, and workload.jsonl lists every
acknowledged one. Detection and RTO are measured the same way (a Prometheus of the drill's own scrapes the
live ports with the installation's metrics token). The scratch directory (drills/<id>/sandbox/) holds only
that Prometheus's files and is removed by the clean-up.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from .. import layout
from ..errors import DrillError, LiveDrillRefused
from ..installation import Installation
from .sandbox import Sandbox

LIVE_FAULTS = ("kill-erp", "hang-erp")
WHY_NOT_LIVE = {
    "corrupt-database": "its fault damages the database and its recovery restores a backup over it",
    "delete-rows": "its fault deletes rows and its recovery restores a backup",
    "field-key-lost": "its fault deletes the field-encryption key and its recovery restores it from the escrow copy",
    "upgrade-killed": "its fault kills an upgrade half-way through the live schema and release",
    "disk-full": "its fault makes the live backups fail (ENOSPC) and its recovery takes a new one",
    "backup-store-unreachable": "its fault moves the live backup repository away",
}


def refuse_unless_live(scenario) -> None:
    """LiveDrillRefused (exit 78) naming why, for a scenario whose fault may not run on the live installation."""
    kind = scenario.fault.kind
    if kind in LIVE_FAULTS and not scenario.destructive:
        return
    why = WHY_NOT_LIVE.get(kind, f"its fault {kind} is not one a live drill injects")
    if scenario.destructive:
        why = f"it destroys data (destructive: true); {why}"
    raise LiveDrillRefused(f"the scenario {scenario.name!r} is never run on the live installation: {why}. "
                           f"Live drills inject only: {', '.join(LIVE_FAULTS)}",
                           fix=f"Run it in its sandbox: erpctl drill run {scenario.name}.")


class LiveTarget(Sandbox):
    """The live installation, in the shape the engine, the injector, the workload and the runbook runner
    use a sandbox: its `erpctl up` (ports and pid from its runtime record), erpctl commands run on its data
    directory, and the drill-only user."""

    def __init__(self, inst: Installation, scratch: Path, drill_id: str):
        rt = inst.runtime()
        if not rt.alive():
            raise DrillError("no `erpctl up` serves this installation: a live drill needs it serving",
                             fix="Start it (erpctl up), then run the drill again.")
        super().__init__(scratch, "postgresql" if str(inst.database_url or "").startswith("postgresql")
                         else "sqlite", None, int(rt.erp_port), int(rt.ops_port))
        self.inst = inst
        self.live_erp_url = (rt.erp_url or f"http://127.0.0.1:{rt.erp_port}").rstrip("/")
        self.metrics_token = inst.get("metrics_token")
        self.user = "drill-" + drill_id.split("-", 1)[0].lower()
        self.password = uuid.uuid4().hex
        self.user_created = False

    @property
    def data_dir(self) -> Path:
        return Path(self.inst.data_dir)

    @property
    def erp_url(self) -> str:
        return self.live_erp_url

    @property
    def database_url(self) -> str | None:
        return self.inst.database_url

    def own_env(self) -> dict:
        return {}  # the live installation's own settings, as its data directory holds them

    @property
    def workdir(self) -> Path:
        """erpctl commands on the live installation run from its data directory."""
        return self.data_dir

    def add_user(self) -> None:
        # a service user: a tool's unattended user, which logs in without a second factor (mfa_roles does not
        # apply) and which the ERP's API cannot change
        self.ok("erp", "user", "add", self.user, "--role", "admin", "--service", "--password-stdin",
                input=self.password + "\n")
        self.user_created = True

    @property
    def login(self) -> dict:
        return {"username": self.user, "password": self.password}

    def deactivate_user(self) -> str | None:
        """Deactivate the drill's user; what went wrong, or None."""
        if not self.user_created:
            return None
        r = self.erpctl("erp", "user", "deactivate", self.user, timeout=120)
        return None if r.returncode == 0 else f"erpctl erp user deactivate {self.user} exited {r.returncode}: " \
                                              f"{(r.stderr or r.stdout).strip()[-300:]}"

    def user_active(self) -> bool | None:
        import json
        r = self.erpctl("erp", "user", "list", "--json", timeout=120)
        if r.returncode != 0:
            return None
        data = json.loads(r.stdout)
        rows = data.get("users", data) if isinstance(data, dict) else data
        return next((bool(u.get("active")) for u in rows if u.get("username") == self.user), None)

    def pids(self) -> list:
        return []  # the live installation's processes are not the drill's to end

    def stop(self) -> None:
        pass

    def destroy(self, keep: bool = False) -> list[str]:
        """Deactivate the drill user, remove the scratch directory; what is left over (the live `erpctl up` is
        left serving, and checked to)."""
        left = []
        if (problem := self.deactivate_user()) is not None:
            left.append(f"drill user {self.user} still active ({problem})")
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():
                left.append(f"directory {self.root}")
        return left


def scratch(inst: Installation, drill_id: str) -> Path:
    return layout.path(inst.data_dir, "drill_sandbox", id=drill_id)
