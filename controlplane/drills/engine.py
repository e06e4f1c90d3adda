"""A drill, from its sandbox to its record: prepare -> steady-state -> fault -> detect -> recover -> verify
-> cleanup. Each phase change is written to record.json (atomically) and to the installation's evidence
log (kind drill.<phase>); the clean-up always runs (finally, and SIGTERM/SIGINT/SIGHUP raise into it).

What it measures (controlplane/drills/README in runbooks/drills/README.md):
- detection: fault -> the first `erpctl status` (the control plane's probes, alerts and checks of the
  sandbox) naming one of the scenario's expected items, and where Prometheus is installed fault -> the
  scenario's expected alert pending and firing in the drill's own Prometheus (detection.py);
- RTO: fault -> the first business write the API acknowledged after the runbook ended;
- RPO: the acknowledged writes missing after the recovery, and the window they were written in.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from erp_core import ops

from .. import __version__, layout, procs
from ..errors import DrillError, LiveDrillNotApproved
from ..evidence import EvidenceLog
from ..installation import Installation
from ..runbook.engine import operator
from . import approvals, checks
from . import record as records
from . import state as states
from . import detection, live
from .inject import Injector
from .recovery import run_runbook
from .sandbox import Sandbox
from .scenario import Loaded
from .workload import Workload

STEADY_SECONDS = 1.0
RTO_WAIT_SECONDS = 60.0


class Aborted(Exception):
    """A signal asked the drill to stop (erpctl drill abort, Ctrl+C)."""


@dataclass
class Options:
    backend: str = "sqlite"
    scale: int = 1
    fresh: bool = False
    keep: bool = False
    target: str = "sandbox"
    detect: str = "auto"              # auto: Prometheus where installed; probes; prometheus (required)
    alert_for: float | None = None    # the expected alert's `for`, seconds (None: as shipped)


class Drill:
    def __init__(self, inst: Installation, loaded: Loaded, opts: Options, progress, environ: dict):
        self.inst, self.loaded, self.sc, self.opts = inst, loaded, loaded.scenario, opts
        self.progress, self.environ = progress, environ
        self.rec = self._new_record()
        self.dir = records.directory(inst.data_dir, self.rec.id)
        self.box = self._target()
        self.injector = Injector(self.box)
        self.workload: Workload | None = None
        self.evidence = EvidenceLog(inst.data_dir)
        self.t_fault: float | None = None
        self.prom = None  # the drill's Prometheus (detection.py), when the scenario names an alert

    # ---------------------------------------------------------------------------- the record

    def _new_record(self) -> records.DrillRecord:
        sc = self.sc
        started = dt.datetime.now(dt.timezone.utc)
        retention = started.date() + dt.timedelta(days=int(self.inst.get("drill_retention_days")))
        return records.DrillRecord(
            id=records.drill_id(sc.name, started),
            scenario={"name": sc.name, "title": sc.title, "file": self.loaded.path.name, "sha256": self.loaded.sha256,
                      "fault": sc.fault.kind, "destructive": sc.destructive},
            target=self.opts.target, backend=self.opts.backend, operator=operator(),
            participants=[{"name": operator(), "role": "operator"}],
            versions={"erpctl": __version__, "release": None, "schema_revision": None},
            objectives={**sc.objectives.model_dump(), "declared_at": records.now_iso()},
            retention_until=retention.isoformat())

    def _target(self) -> Sandbox:
        return Sandbox(layout.path(self.inst.data_dir, "drill_sandbox", id=self.rec.id), self.opts.backend,
                       self._admin_url())

    def phase(self, phase: str, event: str, **detail) -> None:
        row = self.rec.event(phase, event, **detail)
        self.rec.save(self.inst.data_dir)
        self.evidence.append(f"drill.{phase}", {"drill": self.rec.id, "scenario": self.sc.name, "event": event,
                                                "detail": detail}, actor=self.rec.operator)
        self.progress({"event": "phase", "drill": self.rec.id, "at": row["at"], "phase": phase, "text": event,
                       "detail": detail})

    def _admin_url(self) -> str | None:
        if self.opts.backend != "postgresql":
            return None
        url = self.inst.get("drill_postgresql_url")
        if url:
            return url
        own = self.inst.database_url
        if own and own.startswith("postgresql"):
            return make_url(own).set(database="postgres").render_as_string(hide_password=False)
        return None

    # ------------------------------------------------------------------------------- phases

    def prepare(self) -> None:
        self.phase("prepare", "drill started", scenario=self.sc.name, backend=self.opts.backend,
                   objectives=self.rec.objectives)
        self.box.create(self.sc.schedule)
        states.update(self.inst.data_dir, self._active())
        if self.sc.fault.kind == "upgrade-killed":
            linked = self.box.use_releases(self.inst, __version__)
            self.phase("prepare", f"sandbox serves release {linked['from']}; the upgrade to {linked['to']} is "
                                  "rehearsed", **linked)
        if self.opts.fresh:
            seeded = self.box.seed(self.opts.scale)
            self.phase("prepare", f"sandbox seeded from scratch (--fresh, scale {self.opts.scale})", seed=seeded)
        else:
            restored = self.box.restore_from(self.inst, self.environ)
            self.rec.check("restore-test", "steady-state", True, f"backup {restored['backup']} restored and verified")
            self.phase("prepare", f"sandbox restored from backup {restored['backup'][:8]} (verified first)",
                       backup=restored["backup"], backup_created_at=restored["created_at"])
        self._escrow()
        self.box.ok("backup", "init", "--key-file", self.box.key_file)
        self.box.ok("backup", "create")  # the sandbox's own first backup: its status is green before the fault
        self.box.add_user()
        self.box.start()
        self.rec.versions.update(self._versions())
        self.phase("prepare", "sandbox serving", erp_url=self.box.erp_url, ops_port=self.box.ops_port,
                   database=self.box.database or "sqlite")
        detection.prepare(self)

    def _escrow(self) -> None:
        """The escrow copy of the sandbox's field key, made as an installation makes it (at its first
        migrate when an escrow secret is set; else here, with `erpctl field-key escrow`)."""
        self.box.ensure_field_key()
        copy = Path(self.box.installation().get("field_key_escrow_file"))
        if not copy.exists():
            self.box.ok("field-key", "escrow")
        self.phase("prepare", "field key escrowed (passphrase copy beside the sandbox's data directory)")

    def _active(self) -> states.Active:
        pid = __import__("os").getpid()
        return states.Active(self.rec.id, pid, procs.start_ticks(pid), str(self.box.root), self.opts.backend,
                             self.box.erp_port, self.box.ops_port, self.box.database, self.box.admin_url,
                             self.opts.keep)

    def _versions(self) -> dict:
        url = self.box.database_url or f"sqlite:///{layout.path(self.box.data_dir, 'database')}"
        eng = create_engine(ops.normalise_url(url))
        try:
            with eng.connect() as c:
                revision = ops.current_revision(c)
        finally:
            eng.dispose()
        serving = self.box.installation().serving()
        return {"schema_revision": revision,
                "release": getattr(serving, "version", None) or self.box.release or __version__}

    def steady_state(self) -> None:
        self.workload = Workload(self.box.erp_url, self.box.login, layout.path(self.inst.data_dir, "drill_workload",
                                                                              id=self.rec.id))
        self.workload.set_up()
        self.workload.start()
        time.sleep(STEADY_SECONDS)
        ok = self.checks("steady-state", self.sc.steady_state)
        if self.sc.backup_in_sandbox:
            self.box.ok("backup", "create")
            self.phase("steady-state", "backup taken in the sandbox (the scheduled backup)")
        self.phase("steady-state", "steady state " + ("holds" if ok else "does NOT hold"), ok=ok)
        if not ok:
            raise DrillError("the steady state does not hold before the fault", fix="The record's checks say which.")
        time.sleep(self.sc.fault.after_seconds)

    def checks(self, phase: str, names) -> bool:
        ok = True
        for name in names:
            passed, detail = self._check(name)
            self.rec.check(name, phase, passed, detail)
            ok = ok and passed
        self.rec.save(self.inst.data_dir)
        return ok

    def _check(self, name: str) -> tuple[bool, str]:
        if name == "readyz":
            return self.box.ready(), f"{self.box.erp_url}/readyz"
        if name == "invariants":
            r = self.box.erpctl("erp", "check")
            return r.returncode == 0, (r.stdout or r.stderr).strip()[-500:]
        if name == "status":
            r = self.box.erpctl("status")
            return r.returncode == 0, (r.stdout or r.stderr).strip()[-500:]
        if name == "field-key":
            return checks.field_key(self.box)
        if name == "release":
            return checks.release(self.box, self.box.release or __version__)
        t = time.time()
        got = self.workload.wait_ack_after(t, 30) if self.workload else None
        return got is not None, "a business write acknowledged" if got else "no write acknowledged in 30 s"

    def fault(self) -> None:
        self.t_fault = time.time()
        self.injector.failpoint = self.sc.fault.failpoint
        detail = self.injector.inject(self.sc.fault.kind, self.sc.fault.table, self.sc.fault.pg_table)
        self.t_fault = detail.pop("fault_at", self.t_fault)  # a fault that is the end of a longer action
        self.phase("fault", f"fault injected: {self.sc.fault.kind}", **detail)

    def detect(self) -> None:
        detection.detect(self)

    def recover(self) -> bool:
        for action in self.sc.recover.before:
            self.phase("recover", self.injector.act(action))
        params = dict(self.sc.recover.params)
        if self.sc.recover.discard_writes:
            listed = json.loads(self.box.ok("--json", "backup", "restore", "--dry-run", "latest").stdout)
            params["DISCARD_WRITES"] = str(listed.get("count") or 0)
            self.phase("recover", f"the restore discards {params['DISCARD_WRITES']} write(s) made since the backup "
                                  "(erpctl backup restore --dry-run)", count=listed.get("count"))
        self.phase("recover", f"runbook {self.sc.recover.runbook} started (--yes)", params=params)
        run = run_runbook(self, params)
        self.rec.runbook = {"name": self.sc.recover.runbook, "run_id": run["run_id"], "outcome": run["status"],
                            "exit_code": run["exit_code"], "manual_steps": run["manual"]}
        self.rec.artifact(run["log"])
        ok = run["status"] == "recovered"
        self.phase("recover", f"runbook {self.sc.recover.runbook} ended {run['status']} (exit {run['exit_code']})",
                   **self.rec.runbook)
        if not ok:
            self.rec.finding(f"The runbook {self.sc.recover.runbook} did not recover the sandbox: it ended "
                             f"{run['status']} (exit {run['exit_code']}); see {run['log'].name}.", "high")
        return ok

    def verify(self, recovered: bool) -> None:
        t_end = time.time()
        first = self.workload.wait_ack_after(t_end, RTO_WAIT_SECONDS) if self.workload else None
        m = self.rec.measured
        m["rto_seconds"] = round(first - self.t_fault, 3) if first is not None else None
        if first is None:
            self.rec.finding(f"No business write was acknowledged within {RTO_WAIT_SECONDS:.0f} s after the "
                             "recovery ended.", "high")
        self.checks("after", self.sc.after)
        self.workload.stop()
        survived, lost = self.workload.missing()
        m.update(self._rpo(survived, lost))
        self.rec.artifact(layout.path(self.inst.data_dir, "drill_workload", id=self.rec.id))
        if lost:
            kinds = sorted({w.action for w in lost})
            self.rec.finding(f"{len(lost)} acknowledged write(s) lost ({', '.join(kinds)}), acknowledged between "
                             f"{_iso(min(w.t for w in lost))} and {_iso(max(w.t for w in lost))}; workload.jsonl "
                             "lists every acknowledged write.", "medium")
        self.phase("verify", f"RTO {m['rto_seconds']} s, {len(lost)} acknowledged write(s) lost of {len(survived) + len(lost)}",
                   rto_seconds=m["rto_seconds"], lost=len(lost), recovered=recovered)

    def _rpo(self, survived, lost) -> dict:
        before = [w.t for w in survived if w.t <= self.t_fault]
        newest = max(before) if before else None
        window = 0.0
        if lost:
            older = [w.t for w in survived if w.t < min(w.t for w in lost)]
            window = round(max(w.t for w in lost) - (max(older) if older else min(w.t for w in lost)), 3)
        return {"rpo_writes_lost": len(lost), "rpo_seconds": window, "acknowledged_writes": len(survived) + len(lost),
                "newest_surviving_age_seconds": round(self.t_fault - newest, 3) if newest else None,
                "failed_requests": len(self.workload.failures)}

    def judge(self, recovered: bool) -> None:
        m, o = self.rec.measured, self.sc.objectives
        pairs = (("detection", o.detection_seconds, m.get("detection_seconds")),
                 ("rto", o.rto_seconds, m.get("rto_seconds")),
                 ("rpo_writes", o.rpo_writes, m.get("rpo_writes_lost")),
                 ("rpo_seconds", o.rpo_seconds, m.get("rpo_seconds")))
        self.rec.results = [{"objective": name, "target": target, "measured": value,
                             "pass": value is not None and value <= target} for name, target, value in pairs]
        for r in self.rec.results:
            if not r["pass"]:
                self.rec.finding(f"Objective {r['objective']} missed: measured {r['measured']}, target {r['target']}.",
                                 "high" if r["objective"] in ("rto", "rpo_writes") else "medium")
        checks_ok = all(c["ok"] for c in self.rec.checks)
        if not checks_ok:
            bad = ", ".join(f"{c['name']} ({c['phase']})" for c in self.rec.checks if not c["ok"])
            self.rec.finding(f"Checks failed: {bad}.", "high")
        passed = recovered and checks_ok and all(r["pass"] for r in self.rec.results)
        self.rec.state = "passed" if passed else "failed"

    def cleanup(self) -> None:
        done = []
        for action in self.sc.cleanup:
            try:
                done.append(self.injector.clean(action))
            except Exception as exc:  # noqa: BLE001 - every clean-up step runs
                done.append(f"{action} failed: {exc}")
        if self.workload is not None:
            self.workload.stop()
        if self.prom is not None:
            self.prom.stop()
            done.append("prometheus stopped")
        left = self.box.destroy(keep=self.opts.keep)
        self.rec.cleanup = {"ok": not left, "left_over": left, "kept": self.opts.keep, "steps": done}
        if left and not self.opts.keep:
            self.rec.finding(f"The clean-up left {', '.join(left)}.", "high")
        self.rec.ended_at = records.now_iso()
        started = dt.datetime.fromisoformat(self.rec.started_at.replace("Z", "+00:00"))
        self.rec.measured["duration_seconds"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 3)
        for name in ("up.log",):
            path = self.box.root / name
            if path.exists():
                self.rec.artifact(path)
        self.phase("cleanup", self._removed_text(), **self.rec.cleanup)

    def _removed_text(self) -> str:
        return "sandbox removed" if not self.opts.keep else f"sandbox kept at {self.box.root}"

    # ---------------------------------------------------------------------------------- run

    def run(self) -> records.DrillRecord:
        states.claim(self.inst.data_dir, self._active())
        self.dir.mkdir(parents=True, exist_ok=True)
        old = _trap_signals()
        try:
            self._phases()
        except Aborted as exc:
            self.rec.state = "aborted"
            self.rec.finding(f"The drill was aborted ({exc}) before it ended.", "medium")
        except Exception as exc:  # noqa: BLE001 - a drill that breaks is recorded failed, and cleaned up
            self.rec.state = "failed"
            said = exc.detail if isinstance(getattr(exc, "detail", None), str) else exc  # SQLAlchemy's is a list
            self.rec.finding(f"The drill could not go on: {type(exc).__name__}: {said}", "high")
        finally:
            _ignore_signals()  # the clean-up is not interrupted: a second Ctrl+C must not leave processes
            try:
                self.cleanup()
            finally:
                _restore_signals(old)
                self.rec.save(self.inst.data_dir)
                self.evidence.append("drill.end", {"drill": self.rec.id, "scenario": self.sc.name,
                                                   "state": self.rec.state, "measured": self.rec.measured,
                                                   "record_sha256": records.sha256_file(self.rec.path(self.inst.data_dir)),
                                                   "artifacts": self.rec.artifacts},
                                     actor=self.rec.operator, outcome=self.rec.state)
                states.release(self.inst.data_dir, self.rec.id)
                self.progress({"event": "end", "drill": self.rec.id, "state": self.rec.state,
                               "measured": self.rec.measured, "record": str(self.rec.path(self.inst.data_dir))})
        return self.rec

    def _phases(self) -> None:
        self.prepare()
        self.steady_state()
        self.fault()
        self.detect()
        recovered = self.recover()
        self.verify(recovered)
        self.judge(recovered)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raise(signum, _frame):
    raise Aborted(signal.Signals(signum).name)


def _trap_signals() -> dict:
    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        old[sig] = signal.signal(sig, _raise)
    return old


def _ignore_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def _restore_signals(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


class LiveDrill(Drill):
    """The drill on the live installation (live.py): approvals checked, no sandbox, a drill-only user."""

    def __init__(self, inst, loaded, opts, progress, environ, granted: list[dict]):
        self.granted = granted
        super().__init__(inst, loaded, opts, progress, environ)
        self.rec.approvals = [{k: a.get(k) for k in ("by", "at", "window", "comment")} for a in granted]
        self.rec.window = approvals.common_window(granted)
        self.rec.participants += [{"name": a["by"], "role": "approver"} for a in granted]

    def _target(self) -> Sandbox:
        return live.LiveTarget(self.inst, live.scratch(self.inst, self.rec.id), self.rec.id)

    def _active(self) -> states.Active:
        active = super()._active()
        active.live_user = self.box.user  # deactivated by the next drill command if this process is killed
        return active

    def _versions(self) -> dict:
        serving = self.inst.serving()
        return {"release": getattr(serving, "version", None) or __version__, "schema_revision": None}

    def prepare(self) -> None:
        self.phase("prepare", "drill started", scenario=self.sc.name, backend=self.box.backend,
                   objectives=self.rec.objectives, target="live")
        self.phase("prepare", "live drill approved by " + " and ".join(a["by"] for a in self.granted)
                   + " in a window containing now", approvals=self.rec.approvals, window=self.rec.window,
                   operator=self.rec.operator)
        states.update(self.inst.data_dir, self._active())
        self.box.add_user()
        self.rec.versions.update(self._versions())
        self.phase("prepare", f"live installation serving; drill user {self.box.user} created (its writes stay, "
                              "marked as drill data)", erp_url=self.box.erp_url, ops_port=self.box.ops_port,
                   user=self.box.user, writes="left in place, marked: own warehouse, partners and product named "
                                              "'Drill ... <tag>', authored by the drill user; listed in workload.jsonl")
        detection.prepare(self)

    def _removed_text(self) -> str:
        return "the live drill's scratch directory removed (nothing of the live installation is removed)"

    def cleanup(self) -> None:
        super().cleanup()
        active = self.box.user_active()
        self.rec.cleanup["drill_user"] = {"name": self.box.user, "active": active}
        serving = self.box.ready()
        self.rec.cleanup["live_serving"] = serving
        if active is not False:
            self.rec.finding(f"The drill user {self.box.user} is not shown deactivated (active: {active}).", "high")
        if not serving:
            self.rec.finding("The live installation does not answer /readyz after the drill.", "high")
        self.phase("cleanup", f"drill user {self.box.user} " + ("deactivated" if active is False else "NOT deactivated")
                   + "; the live installation " + ("serves" if serving else "does NOT serve"),
                   user=self.box.user, active=active, serving=serving)


def run(inst: Installation, loaded: Loaded, opts: Options, progress, environ: dict) -> records.DrillRecord:
    if opts.target == "live":
        live.refuse_unless_live(loaded.scenario)  # LiveDrillRefused (78) names why
        granted = _live_approvals(inst, loaded.scenario.name)
        return LiveDrill(inst, loaded, opts, progress, environ, granted).run()
    return Drill(inst, loaded, opts, progress, environ).run()


def _live_approvals(inst: Installation, scenario: str) -> list[dict]:
    """The approvals a live drill runs under, the check recorded in the evidence log either way."""
    log = EvidenceLog(inst.data_dir)
    try:
        granted = approvals.require_live(inst, scenario, operator())
    except LiveDrillNotApproved as exc:
        log.append("drill.live.approval", {"scenario": scenario, "operator": operator(), "granted": False,
                                           "why": exc.detail}, actor=operator(), outcome="refused")
        raise
    log.append("drill.live.approval", {"scenario": scenario, "operator": operator(), "granted": True,
                                       "approvals": [{k: a.get(k) for k in ("by", "at", "window")} for a in granted]},
               actor=operator(), outcome="approved")
    return granted
