"""The control plane's metrics (the ops port's /metrics), computed when scraped.

Every family is always present, with 0 for what has not happened yet (no backup, no upgrade), so
alert rules can name them from the first scrape. Sources: controlplane.results (probes, backups,
verifications, restore tests, invariants, upgrades, scheduler jobs), the alert store, psutil.

Result fields read (controlplane.results.record(data_dir, key, ok, **fields)):

    probe.<name>                  ok, duration (seconds)
    backup.create                 ok; bytes_added on a success
    backup.verify.L1 .. L4        ok
    backup.restore_test           ok; duration (seconds)
    backup.restore                duration (seconds), when newer than the last restore test
    pitr.verify, pitr.restore     ok (a point-in-time restore proven by the ladder: controlplane/pitr)
    fleet.replication             lag_bytes, lag_transactions, synchronous (erpctl fleet failover --check)
    invariants                    violations (count)
    upgrade                       in_progress (bool), stage, started_at (unix seconds or ISO 8601)
    installation.created          when the first erpctl up served this data directory
    scheduler.<job id>            ok, failures (count so far), last_failure_at (unix seconds)

the runbook runs and the drill records (controlplane/monitoring/exercise.py: when each runbook was last
exercised, each drill scenario's last run, success and measured figures), and the release supervisor's serving state (restarts of the ERP child by this `erpctl up`).

No instrument objects here (only collectors): under PROMETHEUS_MULTIPROC_DIR, prometheus-client
would put them in the ERP workers' files.
"""

from __future__ import annotations

import logging
import os

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import results
from ..errors import ControlPlaneError, DataDirProblem
from ..evidence import EvidenceLog
from ..installation import Installation
from ..release.supervisor import restarts_here
from ..upgrade.state import progress as upgrade_progress
from . import alerts, exercise, probes

log = logging.getLogger("controlplane.exporter")

LEVELS = ("L1", "L2", "L3", "L4")


def _num(entry: results.Result | None, *names, default: float = 0.0) -> float:
    for name in names:
        v = entry.value(name) if entry is not None else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return default


def _pitr(r):
    """PostgreSQL point-in-time recovery and the standby (controlplane/pitr)."""
    proven = max((r.get("pitr.verify.last_success"), r.get("pitr.restore.last_success")), key=results.at)
    yield _gauge("erpctl_pitr_restore_last_success_timestamp_seconds", "When a point-in-time restore (or erpctl "
                 "pitr verify) last passed the verification ladder (0: never)", results.at(proven))
    rep = r.get("fleet.replication")
    yield _gauge("erpctl_replication_last_check_timestamp_seconds", "When the standby's lag was last measured "
                 "(0: never)", results.at(rep))
    yield _gauge("erpctl_replication_lag_bytes", "WAL bytes the standby had not replayed at the last check",
                 _num(rep, "lag_bytes"))
    yield _gauge("erpctl_replication_lag_transactions", "Transactions the standby had not replayed at the last "
                 "check", _num(rep, "lag_transactions"))
    yield _gauge("erpctl_replication_synchronous", "1 if the standby was synchronous at the last check (no "
                 "acknowledged write can be lost by a failover)", 1 if rep and rep.value("synchronous") else 0)


def _gauge(name: str, doc: str, value=None, labels=None) -> GaugeMetricFamily:
    if labels:
        return GaugeMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, value=value)


class CpuSampler:
    """Host CPU busy ratio since the previous scrape (psutil.cpu_times deltas, so no other
    psutil.cpu_percent caller disturbs it)."""

    MIN_WINDOW = 0.5  # seconds of CPU time (all CPUs) below which the previous ratio is kept

    def __init__(self):
        self._last = psutil.cpu_times()
        self._ratio = 0.0

    @staticmethod
    def _busy(t) -> tuple[float, float]:
        total = sum(t)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total, total - idle

    def ratio(self) -> float:
        now = psutil.cpu_times()
        t0, b0 = self._busy(self._last)
        t1, b1 = self._busy(now)
        if t1 - t0 >= self.MIN_WINDOW:
            self._ratio = min(1.0, max(0.0, (b1 - b0) / (t1 - t0)))
            self._last = now
        return self._ratio


def erp_processes(pid: int | None = None) -> list[psutil.Process]:
    """The process (default: this one, `erpctl up`) and its children: the ERP's child process, and
    workers of a pre-forking server."""
    try:
        me = psutil.Process(pid or os.getpid())
        return [me, *me.children(recursive=True)]
    except psutil.Error:
        return []


class ControlPlaneCollector:
    def __init__(self, data_dir, job_ids=(), erp_pid: int | None = None, unrecorded=None, runbooks_dir=None):
        """job_ids: the scheduled jobs (a list, or a callable returning one), so that each has a
        series before its first run; erp_pid: the ERP's process (default: this one); unrecorded: a
        callable giving the scheduler's runs whose results could not be written (failed runs); runbooks_dir:
        the runbooks whose exercise is reported (default: the installation's setting)."""
        self.data_dir = data_dir
        self.job_ids = job_ids if callable(job_ids) else (lambda ids=tuple(job_ids): ids)
        self.erp_pid = erp_pid
        self.unrecorded = unrecorded or dict
        self.cpu = CpuSampler()
        self.runbooks_dir = runbooks_dir
        self.runbooks = exercise.RunbookIndex()

    def collect(self):
        try:
            r = results.read(self.data_dir) if self.data_dir is not None else {}
        except (OSError, ValueError, DataDirProblem):
            log.warning("cannot read the results file", exc_info=True)
            r = {}
        lost = self.unrecorded()
        yield from self._probes(r, lost)
        yield from self._backups(r)
        yield from _pitr(r)
        yield from self._operations(r)
        yield from self._alerts(r)
        yield from self._evidence()
        yield from _jobs(r, lost, self.job_ids())
        yield from exercise.families(self.data_dir, self._runbooks_dir(), self.runbooks)
        yield from self._host()

    def _runbooks_dir(self):
        if self.runbooks_dir is not None or self.data_dir is None:
            return self.runbooks_dir
        try:
            return Installation.open(self.data_dir).get("runbooks_dir")
        except ControlPlaneError:
            log.warning("cannot resolve the runbooks directory", exc_info=True)
            return None

    # ---- probes ----
    def _probes(self, r, lost):
        ok = _gauge("erpctl_probe_success", "1 if the probe's latest run succeeded (0 before its first run)",
                    labels=["probe"])
        dur = _gauge("erpctl_probe_duration_seconds", "Duration of the probe's latest run", labels=["probe"])
        last = _gauge("erpctl_probe_last_run_timestamp_seconds", "When the probe last ran (0: never)",
                      labels=["probe"])
        for name in probes.NAMES:
            e = r.get(probes.RESULT_PREFIX + name)
            unknown = "probe." + name in lost  # its latest result could not be recorded: not "ok"
            ok.add_metric([name], 1 if e and e.ok and not unknown else 0)
            dur.add_metric([name], _num(e, "duration"))
            last.add_metric([name], results.at(e))
        yield from (ok, dur, last)

    # ---- the evidence log ----
    def _evidence(self):
        """The whole chain checked on every scrape (about 0.07 s for 10,000 records; each record's
        signature is checked once per process, about 0.1 ms each, then remembered); a log an
        interrupted append left is intact (the next append completes it)."""
        if self.data_dir is None:
            return
        try:
            count, problems = EvidenceLog(self.data_dir).verify()
        except OSError:
            log.warning("cannot read the evidence log", exc_info=True)
            count, problems = 0, [None]
        yield _gauge("erpctl_evidence_chain_ok", "1 if the evidence log's hash chain verifies (erpctl evidence "
                     "verify), 0 if a record was altered, removed, reordered or the log is unreadable",
                     0 if problems else 1)
        yield _gauge("erpctl_evidence_records", "Records in the evidence log that verified", count)

    # ---- backups and restores ----
    def _backups(self, r):
        last_ok = r.get("backup.create.last_success")
        yield _gauge("erpctl_backup_last_success_timestamp_seconds", "When the last successful backup finished "
                     "(0: never)", results.at(last_ok))
        yield _gauge("erpctl_backup_last_bytes_added", "Bytes the last successful backup added to the repository",
                     _num(last_ok, "bytes_added"))
        ver = _gauge("erpctl_backup_verification_success", "1 if the latest verification at this level passed "
                     "(0: failed or never run)", labels=["level"])
        ver_ts = _gauge("erpctl_backup_verification_last_timestamp_seconds", "When a verification at this level "
                        "last ran (0: never)", labels=["level"])
        for level in LEVELS:
            e = r.get(f"backup.verify.{level}")
            ver.add_metric([level], 1 if e and e.ok else 0)
            ver_ts.add_metric([level], results.at(e))
        yield from (ver, ver_ts)
        test_ok = r.get("backup.restore_test.last_success")
        yield _gauge("erpctl_restore_test_last_success_timestamp_seconds", "When a restore test last succeeded "
                     "(0: never)", results.at(test_ok))
        latest = max((r.get("backup.restore_test"), r.get("backup.restore")), key=results.at)
        yield _gauge("erpctl_restore_duration_seconds", "Duration of the latest restore or restore test (0: none)",
                     _num(latest, "duration", "duration_seconds", "seconds"))

    # ---- invariants and upgrades ----
    def _operations(self, r):
        inv = r.get("invariants")
        yield _gauge("erpctl_invariant_violations", "Business invariant violations found by the latest check",
                     _num(inv, "violations"))
        up = upgrade_progress(self.data_dir) if self.data_dir is not None else {}
        yield _gauge("erpctl_upgrade_in_progress", "1 while an upgrade is in progress", int(bool(up.get("in_progress"))))
        yield _gauge("erpctl_upgrade_stage_started_timestamp_seconds", "When the current upgrade stage started "
                     "(0: no upgrade in progress)", up.get("stage_started") or 0.0)
        yield _gauge("erpctl_installation_created_timestamp_seconds", "When the installation was first served by "
                     "erpctl up (0: not yet); the backup alerts wait a grace period from it",
                     results.at(r.get(results.CREATED)))
        yield CounterMetricFamily("erpctl_erp_restarts", "Restarts of the ERP's process by this erpctl up (it "
                                  "exited, or hung and was killed)",
                                  value=restarts_here(self.data_dir) if self.data_dir is not None else 0)

    def _alerts(self, r):
        firing = alerts.firing_by_severity(self.data_dir) if self.data_dir is not None else \
            dict.fromkeys(alerts.SEVERITIES, 0)
        fam = _gauge("erpctl_alerts_firing", "Alerts firing, as received from Alertmanager, by severity",
                     labels=["severity"])
        for sev in alerts.SEVERITIES:
            fam.add_metric([sev], firing.get(sev, 0))
        yield fam

    # ---- the host ----
    def _host(self):
        yield _gauge("erpctl_host_cpu_usage_ratio", "Host CPU busy ratio (0-1) since the previous scrape",
                     self.cpu.ratio())
        mem = psutil.virtual_memory()
        yield _gauge("erpctl_host_memory_available_bytes", "Host memory available to new processes",
                     mem.available)
        yield _gauge("erpctl_host_memory_total_bytes", "Host memory in total", mem.total)
        try:
            disk = psutil.disk_usage(str(self.data_dir)) if self.data_dir is not None else None
        except OSError:
            disk = None
        yield _gauge("erpctl_data_dir_filesystem_free_bytes", "Free bytes of the data directory's filesystem "
                     "(for unprivileged users)", disk.free if disk else 0)
        yield _gauge("erpctl_data_dir_filesystem_size_bytes", "Size of the data directory's filesystem",
                     disk.total if disk else 0)
        rss = fds = 0
        for p in erp_processes(self.erp_pid):
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    fds += p.num_fds()
            except psutil.Error:  # gone meanwhile
                continue
        yield _gauge("erpctl_erp_process_resident_memory_bytes", "Resident memory of the ERP's processes", rss)
        yield _gauge("erpctl_erp_process_open_fds", "Open file descriptors of the ERP's processes", fds)


def _jobs(r: dict[str, results.Result], lost: dict, job_ids):
    """The scheduled jobs' runs: results.json's scheduler.<id> records, and the runs whose results
    could not be written (lost), which count as failures. The job label is the job's id (a fixed set)."""
    prefix = "scheduler."
    names = {k[len(prefix):].removesuffix(".last_success") for k in r if k.startswith(prefix)}
    names |= set(job_ids) | set(lost)
    old = _gauge("erpctl_scheduler_job_last_success_timestamp_seconds", "When the scheduled job last ran "
                 "without error (0: never)", labels=["job"])
    ok = _gauge("erpctl_job_last_success_timestamp_seconds", "When the scheduled job last ran without error "
                "(0: never)", labels=["job"])
    bad = _gauge("erpctl_job_last_failure_timestamp_seconds", "When the scheduled job last failed, or its result "
                 "could not be recorded (0: never)", labels=["job"])
    count = CounterMetricFamily("erpctl_job_failures", "Failed runs of the scheduled job (recorded in the data "
                                "directory, plus those whose result could not be written)", labels=["job"])
    for name in sorted(names):
        latest, pending = r.get(prefix + name) or results.Result(ok=True), lost.get(name) or {}
        success = results.at(r.get(f"{prefix}{name}.last_success"))
        old.add_metric([name], success)
        ok.add_metric([name], success)
        failed_at = latest.value("last_failure_at") or (latest.at if not latest.ok else None)
        bad.add_metric([name], max(results.unix_seconds(failed_at), results.unix_seconds(pending.get("at"))))
        count.add_metric([name], _num(latest, "failures") + pending.get("failures", 0))
    yield from (old, ok, bad, count)


def registry(data_dir, job_ids=(), erp_pid: int | None = None, unrecorded=None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ControlPlaneCollector(data_dir, job_ids, erp_pid, unrecorded))
    return reg
