#!/usr/bin/env python
"""Detection to page, measured with the shipped intervals: for each incident a real installation
(`erpctl up` on a fresh data directory) with its own real Prometheus and Alertmanager, configured
from monitors/ with only ports, paths and receiver URLs changed (bench/alerting_stack.py): the
scrape and evaluation intervals of prometheus.yml, the `for:` of alerts.yml, the routes' group_wait
of alertmanager.yml, Prometheus' default resend delay. The fault is caused for real and the time from
it to the notification at the receiver that alert is routed to is measured:

    erp-killed          the ERP (erpctl up's child) SIGKILLed once
    erp-hung            the ERP SIGSTOPped (hung: it answers nothing)
    crash-loop          the ERP SIGKILLed each time it serves again
    erpctl-up-killed    `erpctl up` SIGKILLed (the ERP dies with it); Watchdog must keep arriving
    prometheus-killed   Prometheus SIGKILLed: Watchdog must stop arriving at the dead-man receiver
    disk-full           the data directory's filesystem (a 64 MiB tmpfs; needs root) filled by a file
    backup-failing      the scheduled backup fails (erpctl up has the wrong key)
    invariant-broken    stock changed in the database behind the ERP's back

Pages go to the person's receiver (oncall), tickets to the control plane's (its alerts.json, which
`erpctl status` and the ops console show). The bound beside each figure is computed from the shipped
configuration: the alert's `for`, one scrape and one evaluation interval, its route's group_wait,
plus the shipped interval of the job that detects it where one does (the disk probe, the invariants
check). The failing backup is timed from its first failed run (its job runs every minute here
instead of daily).

Incidents run concurrently, each on its own ports and directory; the whole bench takes about as long
as its slowest incident (ScheduledJobFailing, a ticket: `for: 5m`).

    python bench/incidents.py                   # every incident (~7 min)
    python bench/incidents.py --only disk-full  # one (repeat --only for more)
    python bench/incidents.py --json

Not a test: see bench/README.md.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from alerting_stack import (ALERTMANAGER_CONFIG, PROMETHEUS_RESEND_DELAY_SECONDS, Receiver,  # noqa: E402
                            alertmanager_config, load_yaml, prometheus_config, rule_files, seconds, shipped_bound)
from startup import erpctl_path  # noqa: E402
from controlplane import layout, results  # noqa: E402
from controlplane.monitoring import alerts as cp_alerts  # noqa: E402
from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE  # noqa: E402
from controlplane.monitoring.jobs import DEFAULT_SCHEDULES as PROBE_SCHEDULES  # noqa: E402

PASSPHRASE = "bench incidents passphrase"
BACKUP_SCHEDULE = "1m"
DISK_MIN_FREE = 16 << 20
MIB = 1 << 20
POLL = 0.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(predicate, timeout: float, poll: float = POLL):
    """predicate()'s first true value within `timeout` seconds, else None (errors count as false)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = predicate()
            if got:
                return got
        except (requests.RequestException, OSError, ValueError, KeyError):
            pass
        time.sleep(poll)
    return None


@dataclass
class Result:
    incident: str
    alert: str
    receiver: str
    measured_seconds: float | None
    bound_seconds: float | None
    bound: str
    note: str = ""


@dataclass
class Stack:
    """One installation and its alerting pipeline, in `work`."""

    name: str
    work: Path
    data: Path
    env: dict
    procs: dict = field(default_factory=dict)
    oncall: Receiver | None = None
    deadman: Receiver | None = None
    mounted: Path | None = None

    def erpctl(self, *args, check=True, env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([erpctl_path(), *map(str, args)], capture_output=True, text=True,
                           env=self.env if env is None else env, timeout=600)
        if check and r.returncode != 0:
            raise RuntimeError(f"{self.name}: erpctl {' '.join(map(str, args))} -> {r.returncode}\n{r.stderr[-2000:]}")
        return r

    def start_up(self) -> None:
        log = open(self.work / "erpctl-up.log", "ab")  # noqa: SIM115 - for the life of the process
        proc = subprocess.Popen([erpctl_path(), "--json", "up", "--data-dir", str(self.data), "--erp-port", "0",
                                 "--ops-port", "0"], stdout=subprocess.PIPE, stderr=log, text=True, env=self.env,
                                start_new_session=True)
        self.procs["erpctl up"] = proc
        for line in proc.stdout:
            if line.startswith("{") and json.loads(line).get("event") == "started":
                info = json.loads(line)
                self.erp_port, self.ops_port = info["erp_port"], info["ops_port"]
                break
        else:
            raise RuntimeError(f"{self.name}: erpctl up exited ({proc.wait()}); see {self.work / 'erpctl-up.log'}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
        self.erp_url = f"http://127.0.0.1:{self.erp_port}"
        if not until(lambda: requests.get(self.erp_url + "/readyz", timeout=2).ok, 180):
            raise RuntimeError(f"{self.name}: the ERP did not become ready")

    def start_pipeline(self) -> None:
        self.oncall, self.deadman = Receiver("oncall"), Receiver("deadman")
        am_port, prom_port = free_port(), free_port()
        rules = self.work / "rules"
        rules.mkdir()
        prom_cfg, am_cfg = self.work / "prometheus.yml", self.work / "alertmanager.yml"
        targets = {"erp": f"127.0.0.1:{self.erp_port}", "erpctl": f"127.0.0.1:{self.ops_port}"}
        prom_cfg.write_text(yaml.safe_dump(prometheus_config(rule_files(rules, {}), targets, am_port)))
        am_cfg.write_text(yaml.safe_dump(alertmanager_config(self.ops_port, self.data / WEBHOOK_TOKEN_FILE,
                                                             self.oncall.url, self.deadman.url)))
        for name, argv in (
                ("alertmanager", ["prometheus-alertmanager", f"--config.file={am_cfg}",
                                  f"--storage.path={self.work / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                  "--cluster.listen-address="]),
                ("prometheus", ["prometheus", f"--config.file={prom_cfg}", f"--storage.tsdb.path={self.work / 'prom'}",
                                f"--web.listen-address=127.0.0.1:{prom_port}"])):
            with open(self.work / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        self.prom_url = f"http://127.0.0.1:{prom_port}"
        for url in (f"http://127.0.0.1:{am_port}/-/ready", self.prom_url + "/-/ready"):
            if not until(lambda u=url: requests.get(u, timeout=2).ok, 60):
                raise RuntimeError(f"{self.name}: {url} not ready; logs in {self.work}")
        if not until(lambda: {(s["metric"]["job"], s["value"][1]) for s in self.query("up")}
                     == {("erp", "1"), ("erpctl", "1")}, 120):
            raise RuntimeError(f"{self.name}: Prometheus did not scrape both targets")

    def query(self, q: str) -> list:
        r = requests.get(self.prom_url + "/api/v1/query", params={"query": q}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def serving(self) -> dict:
        return json.loads(layout.path(self.data, "serving").read_text())

    def serving_again(self, old_pid: int, timeout: float) -> int | None:
        """The ERP's new pid once it serves again after `old_pid` (None when it did not in time)."""
        def again():
            s = self.serving()
            return (s["state"] == "serving" and s["pid"] != old_pid
                    and requests.get(self.erp_url + "/healthz", timeout=2).ok and s["pid"])
        return until(again, timeout)

    def at_oncall(self, alertname: str, since: float, timeout: float) -> float | None:
        """When `alertname` first reached the person's receiver after `since`."""
        got = until(lambda: self.oncall.alerts(alertname, since=since), timeout)
        return got[0][0] if got else None

    def stop(self) -> None:
        for name in ("erpctl up", "prometheus", "alertmanager"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    proc.kill()
        for r in (self.oncall, self.deadman):
            if r is not None:
                r.close()


def bound_of(alertname: str, job_interval: float = 0.0, job: str = "") -> tuple[float, str]:
    b = shipped_bound(alertname)
    parts = [f"for {b['for']:.0f}", f"scrape {b['scrape']:.0f}", f"eval {b['evaluation']:.0f}",
             f"group_wait {b['group_wait']:.0f}"] + ([f"{job} {job_interval:.0f}"] if job_interval else [])
    return b["total"] + job_interval, " + ".join(parts)


def measured(t_fault: float, t: float | None) -> float | None:
    return None if t is None else round(t - t_fault, 1)


# ---- the incidents -----------------------------------------------------------------------------

def erp_stopped(incident: str, sig: signal.Signals):
    """The ERP (erpctl up's child) sent `sig` once: killed, or hung (SIGSTOP). erpctl up restarts it
    (a hung one once its liveness checks fail); ErpDown pages only if it stays down its `for`."""
    def run(stack: Stack, max_wait: float) -> list[Result]:
        pid = stack.serving()["pid"]
        t0 = time.monotonic()
        os.kill(pid, sig)
        back = stack.serving_again(pid, 180)
        restarted = time.monotonic() - t0 if back else None
        bound, how = bound_of("ErpDown")
        paged = stack.at_oncall("ErpDown", t0, min(max_wait, bound + 30))
        note = (f"{'killed as hung and ' if sig == signal.SIGSTOP else ''}restarted by erpctl up after "
                f"{restarted:.1f} s" if restarted else "not restarted by erpctl up")
        expected = " (none expected)" if restarted and restarted < bound_of("ErpDown")[0] - 40 else ""
        return [Result(incident, "ErpDown" + expected, "oncall", measured(t0, paged), bound, how,
                       ("no page: " if paged is None else "") + note)]
    return run


def crash_loop(stack: Stack, max_wait: float) -> list[Result]:
    t0 = time.monotonic()
    restarts: list[float] = []
    pid = stack.serving()["pid"]
    while time.monotonic() - t0 < max_wait and not stack.oncall.alerts("ErpCrashLooping", since=t0):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        new = stack.serving_again(pid, 60)
        if new:
            restarts.append(time.monotonic())
            pid = new
    out = []
    for name in ("ErpCrashLooping", "ErpDown"):
        got = stack.oncall.alerts(name, since=t0)
        bound, how = bound_of(name)
        third = restarts[2] - t0 if len(restarts) >= 3 else 0.0
        out.append(Result("crash-loop", name, "oncall", measured(t0, got[0][0] if got else None),
                          bound + (third if name == "ErpCrashLooping" else 0), how
                          + (f" + 3rd restart at {third:.0f}" if name == "ErpCrashLooping" else ""),
                          f"{len(restarts)} restarts before the page"))
    return out


def erpctl_up_killed(stack: Stack, max_wait: float) -> list[Result]:
    t0 = time.monotonic()
    stack.procs["erpctl up"].send_signal(signal.SIGKILL)
    out = []
    for name in ("ControlPlaneDown", "ErpDown"):
        bound, how = bound_of(name)
        paged = stack.at_oncall(name, t0, max_wait)
        out.append(Result("erpctl-up-killed", name, "oncall", measured(t0, paged), bound, how))
    beats = len(stack.deadman.alerts("Watchdog", since=t0))
    out[0].note = f"Watchdog reached the dead-man receiver {beats} time(s) after the kill"
    return out


def prometheus_killed(stack: Stack, max_wait: float) -> list[Result]:
    if not until(lambda: stack.deadman.alerts("Watchdog"), 240):
        return [Result("prometheus-killed", "Watchdog", "deadman", None, None, "", "Watchdog never arrived")]
    t0 = time.monotonic()
    stack.procs["prometheus"].send_signal(signal.SIGKILL)
    am = load_route("deadman")
    repeat = seconds(am["repeat_interval"])
    bound = 4 * PROMETHEUS_RESEND_DELAY_SECONDS + repeat
    quiet = until(lambda: time.monotonic() - max([t for t, _ in stack.deadman.alerts("Watchdog")]) > 2 * repeat + 15,
                  min(max_wait, bound + 2 * repeat + 60), poll=1)
    last = max(t for t, _ in stack.deadman.alerts("Watchdog"))
    return [Result("prometheus-killed", "Watchdog stops (dead-man)", "deadman", round(last - t0, 1) if quiet else None,
                   bound, f"4 x resend delay {PROMETHEUS_RESEND_DELAY_SECONDS} + repeat {repeat:.0f}",
                   "last heartbeat; the dead-man service pages its silence limit later (alertmanager.yml: > 5 min)")]


def load_route(receiver: str) -> dict:
    return next(r for r in load_yaml(ALERTMANAGER_CONFIG)["route"]["routes"] if r["receiver"] == receiver)


def fill(directory: Path) -> int:
    """A file in `directory` grown until its filesystem is full; the bytes written."""
    fd, written = os.open(directory / "bench-filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND), 0
    try:
        for size in (MIB, 4096, 1):
            while True:
                try:
                    written += os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def disk_full(stack: Stack, max_wait: float) -> list[Result]:
    t0 = time.monotonic()
    written = fill(stack.data)
    probe = seconds(PROBE_SCHEDULES["probe.disk_headroom"])
    bound, how = bound_of("DiskSpaceLow", probe, "probe")
    paged = stack.at_oncall("DiskSpaceLow", t0, max_wait)
    return [Result("disk-full", "DiskSpaceLow", "oncall", measured(t0, paged), bound, how,
                   f"{written / MIB:.0f} MiB written to fill a 64 MiB tmpfs; probe limit {DISK_MIN_FREE / MIB:.0f} MiB")]


def backup_failing(stack: Stack, max_wait: float) -> list[Result]:
    def first_failure():
        e = results.read(stack.data).get("scheduler.backup.create")
        return e and not e["ok"] and float(e["at"])

    at = until(first_failure, seconds(BACKUP_SCHEDULE) + 120)
    if not at:
        return [Result("backup-failing", "ScheduledJobFailing", "erpctl-console", None, None, "", "no failed run")]
    t0 = time.monotonic() - (time.time() - at)  # the failed run, on this clock
    bound, how = bound_of("ScheduledJobFailing")  # from the failed run: its schedule is not part of it
    seen = until(lambda: [a for a in cp_alerts.active(stack.data) if a["alertname"] == "ScheduledJobFailing"],
                 max_wait)
    return [Result("backup-failing", "ScheduledJobFailing", "erpctl-console (ticket)",
                   measured(t0, time.monotonic() if seen else None), bound, how,
                   f"from the first failed run (schedule {BACKUP_SCHEDULE} here; shipped: daily at 02:00)")]


def invariant_broken(stack: Stack, max_wait: float) -> list[Result]:
    with sqlite3.connect(layout.path(stack.data, "database")) as c:
        t0 = time.monotonic()
        c.execute("UPDATE stock_levels SET quantity = quantity + 7 WHERE rowid = (SELECT min(rowid) FROM stock_levels)")
    every = seconds(PROBE_SCHEDULES["invariants"])
    bound, how = bound_of("InvariantViolations", every, "invariants check")
    paged = stack.at_oncall("InvariantViolations", t0, max_wait)
    return [Result("invariant-broken", "InvariantViolations", "oncall", measured(t0, paged), bound, how,
                   "" if paged else f"not within the bench's {max_wait:.0f} s: the check runs every {every:.0f} s")]


# ---- running them ------------------------------------------------------------------------------

def prepare_backup(stack: Stack) -> None:
    stack.erpctl("backup", "init", "--kdf-memory", "8192", "--data-dir", stack.data,
                 env={**stack.env, "ERPCTL_BACKUP_PASSPHRASE": PASSPHRASE})
    stack.env.update(ERPCTL_BACKUP_PASSPHRASE="not the key", ERPCTL_SCHEDULE_BACKUP_CREATE=BACKUP_SCHEDULE)


def prepare_seed(stack: Stack) -> None:
    stack.erpctl("erp", "migrate", "--data-dir", stack.data)
    stack.erpctl("erp", "seed", "--data-dir", stack.data)


def prepare_disk(stack: Stack) -> None:
    mnt = stack.work / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cannot mount a 64 MiB tmpfs (needs root): {r.stderr.strip()}")
    stack.mounted = mnt
    stack.data = mnt / "data"
    stack.env["ERPCTL_PROBE_DISK_MIN_FREE_BYTES"] = str(DISK_MIN_FREE)


INCIDENTS = {  # name: (prepare the data directory before erpctl up, cause the fault and measure)
    "erp-killed": (None, erp_stopped("erp-killed", signal.SIGKILL)),
    "erp-hung": (None, erp_stopped("erp-hung", signal.SIGSTOP)),
    "crash-loop": (None, crash_loop),
    "erpctl-up-killed": (None, erpctl_up_killed),
    "prometheus-killed": (None, prometheus_killed),
    "disk-full": (prepare_disk, disk_full),
    "backup-failing": (prepare_backup, backup_failing),
    "invariant-broken": (prepare_seed, invariant_broken),
}
HERMETIC = ("ERP_FIELD_KEY", "ERPCTL_DATA_DIR", "ERPCTL_DATABASE_URL", "ERPCTL_HOST", "ERPCTL_ERP_PORT",
            "ERPCTL_OPS_PORT", "ERPCTL_BACKUP_PASSPHRASE", "ERPCTL_BACKUP_REPO")


def run_one(name: str, work: Path, max_wait: float) -> list[Result]:
    prepare, incident = INCIDENTS[name]
    d = work / name
    d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in HERMETIC and not k.startswith("ERPCTL_SCHEDULE_")}
    stack = Stack(name, d, d / "data", env)
    try:
        if prepare:
            prepare(stack)
        stack.start_up()
        stack.start_pipeline()
        return incident(stack, max_wait)
    except Exception as exc:  # noqa: BLE001 - one incident's failure is reported, the others go on
        return [Result(name, "-", "-", None, None, "", f"FAILED: {str(exc)[:300]}")]
    finally:
        stack.stop()
        if stack.mounted is not None:
            subprocess.run(["umount", "-l", str(stack.mounted)], check=False)


def render(rows: list[Result], load: tuple, took: float) -> str:
    head = f"{'incident':<18} {'alert':<30} {'receiver':<24} {'measured s':>10} {'bound s':>8}  bound from the shipped config"
    lines = [head, "-" * len(head)]
    for r in rows:
        got = "-" if r.measured_seconds is None else f"{r.measured_seconds:.1f}"
        bound = "-" if r.bound_seconds is None else f"{r.bound_seconds:.0f}"
        lines.append(f"{r.incident:<18} {r.alert:<30} {r.receiver:<24} {got:>10} {bound:>8}  {r.bound}")
        if r.note:
            lines.append(f"{'':<18} {r.note}")
    lines.append(f"\n{len(rows)} row(s) in {took:.0f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                 f"on {os.cpu_count()} CPU(s) at the end")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=sorted(INCIDENTS), help="run this incident (repeatable)")
    p.add_argument("--max-wait", type=float, default=480, help="seconds to wait for each notification (480)")
    p.add_argument("--work", type=Path, help="directory for the stacks (default: a temporary one, removed)")
    p.add_argument("--json", action="store_true", help="the figures as JSON")
    args = p.parse_args(argv)
    for program in ("prometheus", "prometheus-alertmanager"):
        if not shutil.which(program):
            sys.exit(f"{program} is not installed (Debian: apt-get install prometheus prometheus-alertmanager)")
    names = args.only or list(INCIDENTS)
    work = Path(tempfile.mkdtemp(prefix="erpctl-incidents-", dir=args.work))
    t0 = time.monotonic()
    found: dict[str, list[Result]] = {}
    threads = [threading.Thread(target=lambda n=n: found.__setitem__(n, run_one(n, work, args.max_wait)))
               for n in names]
    for i, t in enumerate(threads):
        t.start()
        time.sleep(2 if i < len(threads) - 1 else 0)  # the start-ups do not all land at once
    for t in threads:
        t.join()
    rows = [r for n in names for r in found[n]]
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in rows], "load_average": os.getloadavg(),
                          "seconds": round(time.monotonic() - t0, 1)}, indent=2))
    else:
        print(render(rows, os.getloadavg(), time.monotonic() - t0))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
