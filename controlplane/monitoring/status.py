"""`erpctl status`: one picture of an installation for the on-call engineer, and what needs attention.

Read from the ERP over HTTP (/healthz, /readyz) and from the data directory (results.json,
alerts.json, runtime.json), so it works while `erpctl up` is down, and from psutil for the host.

What needs attention, and how much (the exit code: 0 nothing, 16 warnings only, 17 critical):

    critical  the ERP does not answer /healthz, or /readyz says it is not ready
              an alert of severity "page" or "critical" is firing
              the data directory's filesystem has less free space than the disk headroom limit
              the latest invariants check found violations
              Prometheus or Alertmanager, at a URL that was set (monitoring/pipeline.py), does not answer
    warning   an alert of any other severity but "info" (ticket, warning...) is firing
              a probe's latest run failed, or it has not run for 3 of its intervals while erpctl up runs
              no successful backup, or the last one is older than the backup age limit
              the latest backup attempt failed (by hand or scheduled, with its error)
              a scheduled job's latest run failed (with the job's error)
              the latest verification at some level failed
              there is a backup but no restore test succeeded in the last 8 days (an installation
              first served by erpctl up less than 8 days ago has them for its first, as the alert)
              an upgrade stage started more than UPGRADE_STUCK_SECONDS ago and is still in progress
              less than 5 % of the host's memory is available

With a fleet inventory that has a loadbalancer group, HAProxy's view of the ERP's backend on each load balancer
(controlplane/remote/loadbalancer.py): no server UP is critical (the site serves nobody); a server DOWN,
drained (DRAIN), in maintenance (MAINT) or NOLB, or a load balancer whose state cannot be read, is a warning.
"""

from __future__ import annotations

import dataclasses
import os
import time

import psutil

from .. import results, scheduler
from ..errors import ControlPlaneError, SettingInvalid
from ..installation import BY_NAME, Installation, RuntimeRecord
from . import alerts, jobs, pipeline, probes
from ..upgrade.state import progress as upgrade_progress
from .probes import ProbeFailed, http_json

CRITICAL, WARNING = "critical", "warning"
UPGRADE_STUCK_SECONDS = 1800
RESTORE_TEST_MAX_AGE_SECONDS = 8 * 86400
MEMORY_MIN_AVAILABLE_RATIO = 0.05
STALE_INTERVALS = 3
STALE_MIN_SECONDS = 60
# Probes whose condition the status checks itself (with the same limits): flagged once, below.
CHECKED_HERE = ("backup_freshness", "disk_headroom")
# Scheduled jobs whose failure another part flags (the latest backup attempt).
JOBS_FLAGGED_ELSEWHERE = ("backup.create",)


def default_erp_url(data_dir) -> str:
    """The ERP `erpctl up` serves from this data directory (the installation's erp_url setting)."""
    return Installation.open(data_dir, strict=False).get("erp_url")


def _age(entry: results.Result | None, now) -> float | None:
    return round(now - entry.at, 1) if entry and entry.at else None


def _runbook(name: str) -> dict:
    return alerts.runbook_of({"labels": {"alertname": name}})


def _erp(erp_url: str, timeout: float) -> dict:
    base = erp_url.rstrip("/")
    out = {"url": base + "/"}
    try:
        status, body = http_json("GET", base + "/healthz", timeout=timeout)
        out["healthz"] = {"ok": status == 200, "status": status,
                          "version": (body or {}).get("version") if isinstance(body, dict) else None}
    except ProbeFailed as exc:
        out["healthz"] = {"ok": False, "error": str(exc)}
    if out["healthz"]["ok"]:
        try:
            status, body = http_json("GET", base + "/readyz", timeout=timeout)
            body = body if isinstance(body, dict) else {}
            out["readyz"] = {"ready": status == 200 and bool(body.get("ready")), "status": status,
                             "checks": body.get("checks")}
        except ProbeFailed as exc:
            out["readyz"] = {"ready": False, "error": str(exc)}
    else:
        out["readyz"] = {"ready": False, "error": "not checked: /healthz did not answer"}
    return out


def _intervals(inst: Installation) -> dict[str, float | None]:
    """Each monitoring job's interval in seconds as configured (None: cron or off)."""
    return {jid: scheduler.interval_seconds(inst.schedule(jid, default)[0])
            for jid, default in jobs.DEFAULT_SCHEDULES.items()}


class Attention(list):
    """What needs attention, each item with its level and, when there is one, its runbook."""

    def flag(self, level, what, detail, runbook=None) -> None:
        item = {"level": level, "what": what, "detail": detail}
        if runbook:
            item.update(runbook)
        self.append(item)

    def state(self) -> str:
        levels = {a["level"] for a in self}
        return CRITICAL if CRITICAL in levels else WARNING if levels else "ok"


def _setting(inst: Installation, name: str, attention: Attention):
    """A setting for the status; an invalid one is flagged and its default used (the rest still shows)."""
    try:
        return inst.get(name)
    except SettingInvalid as exc:
        attention.flag(WARNING, "invalid setting", f"{exc.detail} ({exc.fix})")
        return BY_NAME[name].default


def gather(target, erp_url: str | None = None, timeout: float = 3.0, alerting_urls: dict | None = None) -> dict:
    """The installation's picture: the ERP, alerts, the alerting pipeline, probes, backups, invariants, the
    upgrade, the host. alerting_urls: the --prometheus-url/--alertmanager-url flags ({part: url or None})."""
    now = time.time()
    psutil.cpu_percent(interval=None)  # primed: _host_part reads the CPU's busy ratio over this command's run
    flags = {f"{part}_url": url for part, url in (alerting_urls or {}).items()}
    inst = Installation.open(target.data_dir, target.database_url, strict=False, erp_url=erp_url,
                             environ=getattr(target, "environ", None), **flags)
    data_dir, r, runtime = inst.data_dir, results.read(inst.data_dir), inst.runtime()
    attention = Attention()
    if inst.toml_error:
        attention.flag(WARNING, "invalid setting", inst.toml_error)
    erp = _erp_part(_setting(inst, "erp_url", attention), timeout, runtime, attention)
    firing = _alerts_part(data_dir, attention)
    watch = _alerting_part(inst, timeout, attention)
    probe_rows = _probes_part(inst, r, runtime, erp["served_by_erpctl_up"]["running"], now, attention)
    backup = _backup_part(r, _setting(inst, "probe_backup_max_age_seconds", attention), now, attention)
    backup["repository"] = _setting(inst, "backup_repo", attention)
    invariants = _invariants_part(r, attention)
    upgrade = _upgrade_part(data_dir, now, attention)
    host = _host_part(data_dir, _setting(inst, "probe_disk_min_free_bytes", attention), attention)
    job_rows = _jobs_part(r, attention)
    lb = _loadbalancer_part(inst, timeout, attention)
    state = attention.state()
    attention.sort(key=lambda a: (a["level"] != CRITICAL, a["what"]))
    return {"state": state, "attention": list(attention), "erp": erp, "alerts": firing, "alerting": watch,
            "probes": probe_rows,
            "backup": backup, "invariants": invariants, "upgrade": upgrade, "host": host, "jobs": job_rows,
            "loadbalancer": lb,
            "data_dir": str(data_dir), "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


def _erp_part(erp_url: str, timeout: float, runtime: RuntimeRecord, attention: Attention) -> dict:
    erp = _erp(erp_url, timeout)
    erp["served_by_erpctl_up"] = {"running": runtime.alive(), "pid": runtime.pid,
                                  "started_at": runtime.started_at, "stopped_at": runtime.stopped_at}
    if not erp["healthz"]["ok"]:
        attention.flag(CRITICAL, "erp down", erp["healthz"].get("error") or f"{erp['url']}healthz answered "
                       f"{erp['healthz'].get('status')}", _runbook("ErpDown"))
    elif not erp["readyz"]["ready"]:
        attention.flag(CRITICAL, "erp not ready", f"{erp['url']}readyz: {erp['readyz'].get('checks') or erp['readyz']}",
                       _runbook("ErpNotReady"))
    return erp


def _alerting_part(inst: Installation, timeout: float, attention: Attention) -> dict:
    """Whether Prometheus and Alertmanager answer; a configured one that does not is critical."""
    try:
        endpoints = pipeline.urls(inst)
    except SettingInvalid as exc:
        attention.flag(WARNING, "invalid setting", f"{exc.detail} {exc.fix}")
        return {}
    watch = {ep.part: pipeline.check(ep, timeout) for ep in endpoints}
    for part, row in watch.items():
        if row["configured"] and not row["ok"]:
            attention.flag(CRITICAL, f"{part} unreachable", f"{row['url']} ({row['source']}): "
                           f"{row.get('error') or 'HTTP ' + str(row.get('status'))}; no alert reaches anyone: "
                           + pipeline.fix(part), _runbook("Watchdog"))
    return watch


def _alerts_part(data_dir, attention: Attention) -> list:
    firing = alerts.active(data_dir)
    for a in firing:
        if a["severity"] == "info":
            continue
        level = CRITICAL if a["severity"] in alerts.URGENT else WARNING
        attention.flag(level, f"alert {a['alertname']}", a.get("summary") or a["annotations"].get("description", ""),
                       {"runbook_url": a["runbook_url"], "runbook_path": a["runbook_path"]})
    return firing


def _probes_part(inst: Installation, r: dict, runtime: RuntimeRecord, running: bool, now: float,
                 attention: Attention) -> dict:
    intervals = _intervals(inst)
    started = _epoch(runtime.started_at)
    rows = {}
    for name in probes.NAMES:
        e = r.get(probes.RESULT_PREFIX + name)
        row = {"ok": bool(e and e.ok), "at": e and e.at_iso, "age_seconds": _age(e, now),
               "duration": e and e.value("duration"), "detail": e and e.value("detail"),
               **_runbook(probes.RUNBOOKS[name])}
        interval = intervals.get("probe." + name)
        limit = max(STALE_INTERVALS * interval, STALE_MIN_SECONDS) if interval else None
        last = e.at if e else None
        row["stale"] = bool(running and limit and started and now - max(last or 0, started) > limit)
        rows[name] = row
        if e and not e.ok and name not in CHECKED_HERE:
            attention.flag(WARNING, f"probe {name} failing", e.value("detail", ""), _runbook(probes.RUNBOOKS[name]))
        elif row["stale"]:
            attention.flag(WARNING, f"probe {name} not running", f"no run for {now - max(last or 0, started):.0f} s "
                           f"(every {interval:.0f} s expected)", _runbook("ProbeNotRunning"))
    return rows


def _jobs_part(r: dict[str, results.Result], attention: Attention) -> dict:
    """Every scheduled job's latest run; a failed one is flagged with the job's own error (the backup
    job's is flagged as the latest backup attempt, below)."""
    rows = {}
    for key, e in sorted(r.items()):
        if not key.startswith(scheduler.RESULT_PREFIX) or key.endswith(".last_success"):
            continue
        job_id = key[len(scheduler.RESULT_PREFIX):]
        last_ok = r.get(key + ".last_success")
        rows[job_id] = {**_brief(e), "failures": e.value("failures", 0 if e.ok else 1),
                        "last_success_at": last_ok and last_ok.at_iso}
        if not e.ok and job_id not in JOBS_FLAGGED_ELSEWHERE:
            attention.flag(WARNING, f"scheduled job {job_id} failing",
                           f"its latest run ({e.at_iso}) failed: {e.value('error') or 'no error recorded'}",
                           _runbook("ScheduledJobFailing"))
    return rows


def _latest_backup_attempt(r: dict[str, results.Result]) -> results.Result | None:
    """The newest of the last backup (backup.create, recorded by the backup itself) and the last run
    of the scheduled backup job (which fails before a backup starts with a wrong key, say)."""
    made, job = r.get("backup.create"), r.get(scheduler.RESULT_PREFIX + "backup.create")
    if job and not job.ok and (not made or job.at > made.at):
        return dataclasses.replace(job, fields={**job.fields,
                                                "error": f"the scheduled backup failed: {job.value('error')}"})
    return made


def _backup_part(r: dict[str, results.Result], max_age: float, now: float, attention: Attention) -> dict:
    last_ok, latest = r.get("backup.create.last_success"), _latest_backup_attempt(r)
    test_ok = r.get("backup.restore_test.last_success")
    backup = {
        "last_success_at": last_ok and last_ok.at_iso, "age_seconds": _age(last_ok, now),
        "max_age_seconds": max_age, "bytes_added": last_ok and last_ok.value("bytes_added"),
        "latest": _brief(latest),
        "verifications": {lv: _brief(r.get(f"backup.verify.{lv}")) for lv in ("L1", "L2", "L3", "L4")},
        "restore_test": _brief(r.get("backup.restore_test")),
        "restore_test_last_success_at": test_ok and test_ok.at_iso,
    }
    if not last_ok:
        attention.flag(WARNING, "no backup", "no successful backup recorded", _runbook("BackupMissing"))
    elif backup["age_seconds"] > max_age:
        attention.flag(WARNING, "backup too old", f"last successful backup {backup['age_seconds'] / 3600:.1f} h ago "
                       f"(limit {max_age / 3600:.1f} h)", _runbook(probes.RUNBOOKS["backup_freshness"]))
    if latest and not latest.ok:
        attention.flag(WARNING, "backup failed", f"the latest backup attempt ({latest.at_iso}) failed: "
                       f"{latest.value('error') or latest.value('detail') or ''}".strip(), _runbook("BackupTooOld"))
    for lv, v in backup["verifications"].items():
        if v and not v["ok"]:
            attention.flag(WARNING, f"backup verification {lv} failed",
                           v.get("detail") or v.get("error") or f"at {v['at']}", _runbook("BackupVerificationFailed"))
    # As RestoreTestOverdue: an installation has the same 8 days from its first `erpctl up` for its first test.
    created = r[results.CREATED].at if results.CREATED in r else 0
    new = created and now - created < RESTORE_TEST_MAX_AGE_SECONDS
    if last_ok and not new and (not test_ok or now - test_ok.at > RESTORE_TEST_MAX_AGE_SECONDS):
        attention.flag(WARNING, "restore test overdue", "no restore test succeeded in the last "
                       f"{RESTORE_TEST_MAX_AGE_SECONDS / 86400:.0f} days", _runbook("RestoreTestOverdue"))
    return backup


def _invariants_part(r: dict[str, results.Result], attention: Attention) -> dict:
    inv = r.get("invariants") or results.Result()
    if inv.value("violations"):
        attention.flag(CRITICAL, "invariant violations", f"{inv.value('violations')} violation(s) at {inv.at_iso}: "
                       + "; ".join(v.get("detail", "") for v in inv.value("first", [])[:3]),
                       _runbook("InvariantViolations"))
    return {"violations": inv.value("violations"), "at": inv.at_iso, "first": inv.value("first", [])[:5]}


def _upgrade_part(data_dir, now: float, attention: Attention) -> dict | None:
    up = upgrade_progress(data_dir)
    if not up["in_progress"]:
        return None
    started_at = up["stage_started"]
    if up["interrupted"]:
        attention.flag(WARNING, "upgrade interrupted", f"upgrade {up['id']} at stage {up['stage']!r}: the process "
                       "working on it is gone ('erpctl upgrade status')", _runbook("UpgradeStuck"))
    elif started_at and now - started_at > UPGRADE_STUCK_SECONDS:
        attention.flag(WARNING, "upgrade stuck", f"stage {up['stage']!r} started "
                       f"{(now - started_at) / 60:.0f} min ago", _runbook("UpgradeStuck"))
    return up


def _host_part(data_dir, min_free: int, attention: Attention) -> dict:
    mem = psutil.virtual_memory()
    # the busy ratio since gather() primed it (the command's own run: no sampling pause), and the load
    # average (the last minute's runnable tasks per CPU, which needs no sample at all)
    host = {"cpu_usage_ratio": round(psutil.cpu_percent(interval=None) / 100, 3),
            "load_per_cpu": round(os.getloadavg()[0] / (os.cpu_count() or 1), 2),
            "memory_available_bytes": mem.available, "memory_total_bytes": mem.total}
    try:
        disk = psutil.disk_usage(str(data_dir))
        host.update(data_dir_filesystem_free_bytes=disk.free, data_dir_filesystem_size_bytes=disk.total,
                    disk_min_free_bytes=min_free)
        if disk.free < min_free:
            attention.flag(CRITICAL, "disk nearly full", f"{disk.free / 2**30:.2f} GiB free on the data directory's "
                           f"filesystem (limit {min_free / 2**30:.2f} GiB)", _runbook(probes.RUNBOOKS["disk_headroom"]))
    except OSError as exc:
        host["data_dir_error"] = str(exc)
    if mem.available < MEMORY_MIN_AVAILABLE_RATIO * mem.total:
        attention.flag(WARNING, "memory low",
                       f"{mem.available / 2**20:.0f} MiB available of {mem.total / 2**20:.0f} MiB")
    return host


def _brief(e: results.Result | None) -> dict | None:
    if not e:
        return None
    out = {"ok": e.ok, "at": e.at_iso}
    for k in ("duration", "detail", "error", "bytes_added"):
        if k in e.fields:
            out[k] = e.fields[k]
    return out


def _epoch(value) -> float | None:
    return results.unix_seconds(value) or None




def _loadbalancer_part(inst: Installation, timeout: float, attention: Attention) -> list | None:
    """Each load balancer's backend servers (None without a fleet inventory naming one)."""
    try:
        from ..remote import loadbalancer

        rows = loadbalancer.health(inst, timeout)
    except (SettingInvalid, ControlPlaneError) as exc:
        attention.flag(WARNING, "load balancer unreadable", f"{exc.detail} ({exc.fix})",
                       _runbook("LoadBalancerBackendDown"))
        return None
    for lb in rows:
        where = f"{lb['host']} backend {lb['backend']}"
        if lb.get("error"):
            attention.flag(WARNING, "load balancer unreadable", f"{where}: {lb['error']}",
                           _runbook("LoadBalancerBackendDown"))
            continue
        up = [s["server"] for s in lb["servers"] if s["state"] == "UP"]
        if not up:
            attention.flag(CRITICAL, "site down", f"{where}: no server UP "
                           f"({', '.join(s['server'] + ' ' + s['state'] for s in lb['servers']) or 'no server'})",
                           _runbook("ErpSiteDown"))
        for s in lb["servers"]:
            if s["state"] != "UP":
                drained = {"DRAIN": "drained", "MAINT": "in maintenance", "DOWN": "down"}.get(s["state"], s["state"])
                attention.flag(WARNING, f"load balancer server {s['server']} {drained}",
                               f"{where}: {s['server']} is {s['state']} ({s['status']}; check {s['check'] or '-'}"
                               f"{' ' + s['check_detail'] if s.get('check_detail') else ''}) "
                               f"for {s['since_seconds']} s",
                               _runbook("LoadBalancerBackendDown"))
    return rows or None
