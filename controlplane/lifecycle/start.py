"""`erpctl up --detach`: start this installation's `erpctl up` in the background when it is not running,
and wait until its ERP is ready; nothing is started when it runs already (an Ansible task, a script and an
operator can ask for it again and again: the answer says whether it started one)."""

from __future__ import annotations

import time

from ..evidence import EvidenceLog
from ..installation import Installation
from . import running
from .restart import READY_TIMEOUT_SECONDS, StartPlan, erpctl_program, start_detached, wait_ready
from .stop import lifecycle_lock


def start_plan(inst: Installation, program: list[str], demo: bool = False) -> StartPlan:
    """`erpctl up` with this installation's resolved host and ports; the database URL, when one is set
    here, travels in the environment (erpctl.toml is read again by the new process anyway)."""
    host, erp_port, ops_port = inst.get("host"), inst.get("erp_port"), inst.get("ops_port")
    ops_host = inst.get("ops_host")
    argv = (*program, "up", "--data-dir", str(inst.data_dir), "--host", host, "--erp-port", str(erp_port),
            "--ops-port", str(ops_port), *(("--ops-host", ops_host) if ops_host else ()),
            *(("--demo",) if demo else ()))
    given = inst.resolve("database_url")
    return StartPlan(argv, inst.database_url if given.value is not None else None, host, erp_port, ops_port,
                     inst.display_url)


def start(inst: Installation, ready_timeout: float = READY_TIMEOUT_SECONDS, demo: bool = False,
          program: list[str] | None = None) -> dict:
    """Start `erpctl up` detached unless it runs; wait for /readyz; what was done (`started`)."""
    inst.data_dir.mkdir(parents=True, exist_ok=True)
    with lifecycle_lock(inst):
        rec = inst.runtime()
        up, why = running.find(inst, rec)
        result = {"data_dir": str(inst.data_dir), "log": str(inst.path("up_log"))}
        if up is not None:
            return {**result, "started": False, "pid": up.pid, "erp_url": rec.erp_url, "ops_url": rec.ops_url,
                    "message": "erpctl up runs already: nothing started"}
        t0 = time.monotonic()
        the_plan = start_plan(inst, program or erpctl_program(), demo)
        proc, offset = start_detached(inst, the_plan)
        result.update(started=True, pid=proc.pid, plan=the_plan.as_dict(), message=why,
                      **wait_ready(inst, proc, ready_timeout, offset))
        result["seconds"] = round(time.monotonic() - t0, 2)
        EvidenceLog(inst.data_dir).append("erpctl.start", {k: result.get(k) for k in (
            "data_dir", "pid", "plan", "ready_seconds")})
        return result
