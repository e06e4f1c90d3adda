"""erpctl status: one screen for the on-call engineer."""

from __future__ import annotations

import click

from .. import config
from ..errors import Critical, NeedsAttention, SettingInvalid
from ..installation import Installation
from ..monitoring import status as monitoring_status
from ..release import current_version
from .options import emit, json_option

MARK = {True: "ok  ", False: "FAIL", None: "--  "}


def _gib(n) -> str:
    return f"{n / 2**30:.1f} GiB" if isinstance(n, (int, float)) else "?"


def _age(seconds) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render(r: dict) -> str:
    erp = r["erp"]
    up = erp["served_by_erpctl_up"]
    lines = [f"state: {r['state'].upper()}    (data {r['data_dir']}, {r['checked_at']})", ""]
    if r["attention"]:
        lines.append("needs attention:")
        for a in r["attention"]:
            lines.append(f"  [{a['level']}] {a['what']}: {a['detail']}")
            if a.get("runbook_url"):
                lines.append(f"      runbook: {a.get('runbook_path') or a['runbook_url']}")
        lines.append("")
    health = erp["healthz"]
    lines.append(f"ERP        {erp['url']}  healthz {MARK[health['ok']].strip()}"
                 f"{' (' + health['version'] + ')' if health.get('version') else ''}"
                 f"  readyz {'ready' if erp['readyz']['ready'] else 'NOT READY'}"
                 f"  erpctl up {'running (pid ' + str(up['pid']) + ')' if up['running'] else 'not running'}")
    rel = r.get("release") or {}
    serving = rel.get("serving")
    lines.append("release    " + (f"current {rel['current']}" if rel.get("current") else
                                  "none current (the bundled erp_core serves)")
                 + (f"; serving {serving['version']} ({serving['state']}, pid {serving['pid']}, "
                    f"{serving['restarts']} restart(s))" if serving else ""))
    lines.append("pipeline   " + "  ".join(
        f"{part} {row['url']} {'ok' if row['ok'] else 'UNREACHABLE' if row['configured'] else 'not answering'}"
        for part, row in r["alerting"].items()))
    lines.append(f"alerts     {len(r['alerts'])} firing")
    for a in r["alerts"]:
        lines.append(f"  {a['severity']:<8} {a['alertname']}  {a.get('summary', '')}  since {a.get('startsAt')}")
        lines.append(f"           runbook: {a.get('runbook_path') or a['runbook_url']}")
    lines.append("probes" + (f"     (ran again now, their latest run had failed: {', '.join(r['rechecked'])})"
                             if r.get("rechecked") else ""))
    for name, p in r["probes"].items():
        mark = MARK[p["ok"]] if p["at"] else MARK[None]
        stale = "  (stale)" if p["stale"] else ""
        lines.append(f"  {mark} {name:<17} {_age(p['age_seconds']):<12} {p.get('detail') or ''}{stale}")
    b = r["backup"]
    lines.append(f"backup     last success {_age(b['age_seconds'])} (limit {b['max_age_seconds'] / 3600:.0f} h)"
                 + (f", latest attempt {'ok' if b['latest']['ok'] else 'FAILED'}" if b["latest"] else ""))
    ver = "  ".join(f"{lv} {'-' if v is None else 'ok' if v['ok'] else 'FAIL'}" for lv, v in b["verifications"].items())
    lines.append(f"verified   {ver}   restore test: {b['restore_test_last_success_at'] or 'never'}")
    lines.append(f"repository {b['repository']}")
    jobs = r.get("jobs") or {}
    failing = {j: row for j, row in jobs.items() if not row["ok"]}
    lines.append(f"jobs       {len(jobs)} recorded, {len(failing)} failing")
    for job_id, row in failing.items():
        lines.append(f"  FAIL {job_id:<20} {row.get('at')}  {row.get('error') or ''}  "
                     f"(last success {row.get('last_success_at') or 'never'})")
    inv = r["invariants"]
    found = "not checked yet" if inv["violations"] is None else f"{inv['violations']} violation(s)"
    lines.append(f"invariants {found}"
                 f"{' at ' + inv['at'] if inv['at'] else ''}")
    u = r["upgrade"]
    lines.append("upgrade    " + ("none recorded" if not u else
                                  f"{'IN PROGRESS' if u.get('in_progress') else 'done'} stage {u.get('stage')!r}"
                                  f" since {u.get('started_at')}"))
    h = r["host"]
    lines.append(f"host       cpu {h['cpu_usage_ratio'] * 100:.0f}% (load {h['load_per_cpu']:.2f} per CPU)  "
                 f"memory {_gib(h['memory_available_bytes'])} free of "
                 f"{_gib(h['memory_total_bytes'])}  data dir {_gib(h.get('data_dir_filesystem_free_bytes'))} free of "
                 f"{_gib(h.get('data_dir_filesystem_size_bytes'))}")
    lines += _loadbalancer_lines(r.get("loadbalancer"))
    return "\n".join(lines)


def _loadbalancer_lines(lbs) -> list[str]:
    """Each load balancer's backend servers: state, HAProxy's status, last check (a fleet with one)."""
    lines = []
    for lb in lbs or []:
        if lb.get("error"):
            lines.append(f"balancer   {lb['host']} backend {lb['backend']}: UNREADABLE {lb['error']}")
            continue
        up = sum(s["state"] == "UP" for s in lb["servers"])
        lines.append(f"balancer   {lb['host']} backend {lb['backend']}: {up} of {len(lb['servers'])} server(s) UP")
        for s in lb["servers"]:
            lines.append(f"  {'ok  ' if s['state'] == 'UP' else 'FAIL'} {s['server']:<16} {s['state']:<6} "
                         f"check {s['check'] or '-':<8} {s.get('check_detail') or ''}  "
                         f"(for {s['since_seconds']} s)")
    return lines


def _release(inst: Installation, up: dict) -> dict:
    """The current release, and the one the running `erpctl up` serves (None when it serves the bundled ERP)."""
    serving = inst.serving() if up["running"] else None
    if serving is not None and serving.erpctl_pid != up.get("pid"):
        serving = None  # written by an earlier `erpctl up`
    shown = serving is not None and serving.state in ("serving", "restarting", "switching", "failed")
    return {"current": current_version(inst),
            "serving": {k: getattr(serving, k) for k in ("version", "state", "pid", "restarts", "at")}
            if shown else None}


def _recheck(inst: Installation) -> dict:
    from ..monitoring import recheck

    try:
        url = inst.get("erp_url")
    except SettingInvalid:
        return {}  # flagged by the status
    return recheck.recheck(inst, url)


@click.command()
@click.option("--data-dir", envvar="ERPCTL_DATA_DIR", metavar="DIR", type=click.Path(file_okay=False, path_type=str),
              help=f"Data directory of the installation. Default: ./{config.DEFAULT_DATA_DIR} [env ERPCTL_DATA_DIR]")
@click.option("--erp-url", metavar="URL",
              help="The ERP to check. Default: where 'erpctl up' serves it for this data directory, else "
                   "[erp] url in erpctl.toml, else http://<host>:<erp port> (8000). [env ERPCTL_ERP_URL]")
@click.option("--prometheus-url", metavar="URL",
              help="Prometheus, checked for an answer. [env ERPCTL_PROMETHEUS_URL; erpctl.toml [monitoring] "
                   "prometheus_url; default http://127.0.0.1:9090, not flagged when nothing answers there]")
@click.option("--alertmanager-url", metavar="URL",
              help="Alertmanager, checked for an answer. [env ERPCTL_ALERTMANAGER_URL; erpctl.toml [monitoring] "
                   "alertmanager_url; default http://127.0.0.1:9093, not flagged when nothing answers there]")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for the ERP's answers.")
@click.option("--no-recheck", is_flag=True,
              help="Report the probes and monitoring jobs as last recorded; without it, those whose latest run "
                   "failed run again now (and are recorded), so a recovery shows at once.")
@json_option
def status(data_dir, erp_url, prometheus_url, alertmanager_url, timeout, no_recheck):
    """Health of the installation: the ERP, firing alerts and failing probes with their runbooks,
    backups and verifications, the upgrade, the host's headroom.

    Exit 0 when nothing needs attention, 16 when something does (warnings: a load balancer's server
    down, drained or in maintenance among them), 17 when something is critical (the ERP down or not ready,
    a critical alert, a nearly full disk, invariant violations, a Prometheus or Alertmanager that was
    configured but does not answer, a load balancer with no server UP). A probe or monitoring job
    (the invariants check) whose latest run failed runs again first, so what is shown is true now.
    """
    inst = Installation.open(data_dir, strict=False, erp_url=erp_url)
    rechecked = {} if no_recheck else _recheck(inst)
    report = monitoring_status.gather(inst, erp_url, timeout, {"prometheus": prometheus_url,
                                                               "alertmanager": alertmanager_url})
    report["release"] = _release(inst, report["erp"]["served_by_erpctl_up"])
    report["rechecked"] = rechecked
    emit(report, render(report))
    if report["state"] != "ok":
        cls = Critical if report["state"] == monitoring_status.CRITICAL else NeedsAttention
        raise cls(f"{len(report['attention'])} thing(s) need attention ({report['state']}; listed on stdout)",
                  fix="Open the runbook shown beside each one.")
