"""How a drill detects its fault, and what it records of it (record.detection, measured.*):

- the probes: the first `erpctl status` item of the sandbox the scenario expects (the control plane's
  probes, alerts and checks), else the first of its detect.commands that fails: measured
  `probe_detection_seconds` (fault -> that item);
- the scenario's expected alert (detect.alert), evaluated by the drill's own Prometheus with the shipped
  rules (prometheus.py) where `prometheus` is installed: measured `alert_pending_seconds` (fault -> the
  first evaluation that found it pending) and `alert_firing_seconds` (fault -> its first evaluation
  firing), both read from Prometheus's own ALERTS series, so a short outage is not missed between polls.

`detection_seconds`, which the detection objective judges, is the one the scenario's
objectives.detection_by names (probe, alert-pending, alert-firing); without Prometheus it is the probes',
and the record says so. With Prometheus the drill waits for the alert to fire (the page the on-call
engineer acts on) before it recovers, at most the scenario's detect.timeout_seconds or the alert's `for`
and ALERT_GRACE_SECONDS, whichever is longer.
"""

from __future__ import annotations

import datetime as dt
import time

from ..errors import DrillError
from ..monitoring import status
from . import prometheus

DETECT_POLL_SECONDS = 0.25
ALERT_GRACE_SECONDS = 30.0  # past the `for`: scrape, evaluation, and the slack of a loaded machine
TARGETS_TIMEOUT = 30.0
NEVER_PENDING_SECONDS = 5.0  # serving again this long with the alert never pending: it will not fire


def prepare(drill) -> None:
    """Start the drill's Prometheus when the scenario names an alert and it is wanted and installed; record
    how the drill will detect."""
    sc, opts, rec = drill.sc, drill.opts, drill.rec
    rec.detection = {"by": sc.objectives.detection_by, "probes": [*sc.detect.status, *sc.detect.commands],
                     "alert": sc.detect.alert, "prometheus": None}
    if sc.detect.alert is None:
        rec.detection["note"] = "the scenario names no alert: detected by the probes"
        return
    program = prometheus.available(str(drill.inst.get("drill_prometheus")))
    if opts.detect == "probes" or program is None:
        if opts.detect == "prometheus":
            raise DrillError(f"--detect prometheus: the prometheus program is not installed (no "
                             f"{drill.inst.get('drill_prometheus')} on PATH)",
                             fix="Install it (apt-get install prometheus) or set drill.prometheus to its path, or "
                                 "run the drill with --detect auto.")
        why = "--detect probes was given" if program else "Prometheus is not installed (no prometheus on PATH)"
        rec.detection["program"] = str(drill.inst.get("drill_prometheus"))
        rec.detection["note"] = f"{why}: the alert {sc.detect.alert} was not evaluated; detected by the probes"
        rec.detection["fallback"] = "probes"
        rec.detection["fallback_reason"] = "probes-chosen" if program else "not-installed"
        drill.phase("prepare", f"{why}: detection by the probes only (the alert {sc.detect.alert} is not evaluated)",
                    fallback="probes")
        return
    drill.prom = prometheus.DrillPrometheus(drill.box.root / "prometheus", sc.detect.alert, opts.alert_for, program)
    started = drill.prom.start(drill.box.erp_port, drill.box.ops_port, drill.box.metrics_token, drill.box.root)
    rec.detection["prometheus"] = started
    _wait_targets(drill)
    said = (f"its `for` shortened to {started['for_seconds']:g} s (shipped: {started['shipped_for_seconds']:g} s)"
            if started["for_shortened"] else f"its `for` as shipped ({started['shipped_for_seconds']:g} s)")
    drill.phase("prepare", f"Prometheus serving with the shipped rules, scraping the sandbox; the alert "
                           f"{sc.detect.alert} detects, {said}", **started)


def _wait_targets(drill) -> None:
    deadline = time.monotonic() + TARGETS_TIMEOUT
    while time.monotonic() < deadline:
        if drill.prom.targets_up():
            return
        time.sleep(0.2)
    raise DrillError(f"the drill's Prometheus did not scrape the sandbox's ERP and ops ports within "
                     f"{TARGETS_TIMEOUT:.0f} s: {drill.prom.log()[-400:]}",
                     fix="Run the drill with --keep and read prometheus/prometheus.log in its sandbox.")


def detect(drill) -> None:
    sc, m = drill.sc, drill.rec.measured
    timeout = sc.detect.timeout_seconds
    if drill.prom is not None:
        timeout = max(timeout, drill.prom.effective_for + ALERT_GRACE_SECONDS)
    deadline = time.monotonic() + timeout
    target = drill.box.installation()
    probe = firing = ready_since = None
    cleared = False
    while time.monotonic() < deadline and not (probe and (drill.prom is None or firing or cleared)):
        if probe is None and (hit := _probed(drill, target)):
            probe = hit
            m["probe_detection_seconds"] = round(time.time() - drill.t_fault, 3)
            drill.phase("detect", f"detected after {m['probe_detection_seconds']} s: {hit['what']}",
                        item=hit, by="probes")
        if drill.prom is not None and firing is None:
            state, firing = _alert(drill)
            # pending, then inactive again: the condition cleared before the `for` (the supervisor of `erpctl
            # up` served again first); or never pending and the sandbox serves again for longer than a scrape
            # and an evaluation take: this alert will not fire for this fault
            if state == "inactive" and probe is not None and "alert_pending_seconds" not in m:
                ready_since = (ready_since or time.monotonic()) if drill.box.ready() else None
            cleared = state == "inactive" and ("alert_pending_seconds" in m or (
                ready_since is not None and time.monotonic() - ready_since > NEVER_PENDING_SECONDS))
        time.sleep(DETECT_POLL_SECONDS)
    _conclude(drill, probe, firing, timeout, cleared)


def _alert(drill) -> tuple[str, dict | None]:
    """The alert's state now (inactive, pending, firing), and the alert once it fired, with when Prometheus
    first evaluated it pending and firing (its own ALERTS history: nothing is missed between two polls)."""
    m = drill.rec.measured
    seen = drill.prom.history(drill.t_fault)
    alert = drill.prom.alert()
    state = alert["state"] if alert else "inactive"
    if "pending" in seen and "alert_pending_seconds" not in m:
        m["alert_pending_seconds"] = round(seen["pending"] - drill.t_fault, 3)
        drill.phase("detect", f"alert {drill.prom.alertname} pending {m['alert_pending_seconds']} s after the fault",
                    alert=drill.prom.alertname, state="pending", at=seen["pending"])
    if "firing" not in seen:
        return state, None
    m["alert_firing_seconds"] = round(seen["firing"] - drill.t_fault, 3)
    drill.phase("detect", f"alert {drill.prom.alertname} firing {m['alert_firing_seconds']} s after the fault "
                          f"(`for` {drill.prom.effective_for:g} s"
                          + (", shortened)" if drill.prom.shortened else ", as shipped)"),
                alert=drill.prom.alertname, state="firing", at=seen["firing"], now=state)
    return "firing", {"state": "firing", "now": state}


def _conclude(drill, probe, firing, timeout, cleared) -> None:
    sc, m, rec = drill.sc, drill.rec.measured, drill.rec
    by = sc.objectives.detection_by if drill.prom is not None else "probe"
    m["detection_seconds"] = {"probe": m.get("probe_detection_seconds"),
                              "alert-pending": m.get("alert_pending_seconds"),
                              "alert-firing": m.get("alert_firing_seconds")}[by] if (probe or firing) else None
    rec.detection["judged"] = by
    if drill.prom is not None and firing is None and cleared:
        rec.detection["alert_outcome"] = "cleared before firing"
        rec.finding(f"The alert {sc.detect.alert} " + (f"went pending {m['alert_pending_seconds']} s after the fault "
                    "and cleared" if "alert_pending_seconds" in m else "never went pending and the sandbox served "
                    "again") + f" before its `for` ({drill.prom.effective_for:g} s) ran out: the service came back "
                    "before anyone was paged.", "low")
    elif drill.prom is not None and firing is None:
        rec.detection["alert_outcome"] = "not fired"
        rec.finding(f"The alert {sc.detect.alert} did not fire within {timeout:.0f} s of the fault (`for` "
                    f"{drill.prom.effective_for:g} s); "
                    + ("it went pending." if "alert_pending_seconds" in m else "it never went pending."), "high")
    elif firing is not None:
        rec.detection["alert_outcome"] = "fired"
    if probe is None:
        rec.finding(f"The probes did not detect the fault within {timeout:.0f} s (expected: "
                    f"{', '.join([*sc.detect.status, *(f'erpctl {c} failing' for c in sc.detect.commands)])}).",
                    "high")
    if drill.prom is None and probe is not None:
        return  # the probes' event said it all
    drill.phase("detect", f"detection judged by {by}: {m['detection_seconds']} s" if m["detection_seconds"] is not None
                else "not detected in time", judged=by, probe_seconds=m.get("probe_detection_seconds"),
                alert_pending_seconds=m.get("alert_pending_seconds"), alert_firing_seconds=m.get("alert_firing_seconds"))


def _probed(drill, target) -> dict | None:
    """The first expected `erpctl status` item, else the first of the scenario's commands that fails."""
    sc = drill.sc
    if sc.detect.status:
        seen = status.gather(target, erp_url=drill.box.erp_url, timeout=1.0)
        hits = [a for a in seen["attention"] if any(a["what"].startswith(p) for p in sc.detect.status)]
        if hits:
            return hits[0]
    for command in sc.detect.commands:
        r = drill.box.erpctl(*command.split(), timeout=60)
        if r.returncode != 0:
            return {"what": f"erpctl {command} exited {r.returncode}",
                    "detail": (r.stderr or r.stdout).strip()[-300:]}
    return None
