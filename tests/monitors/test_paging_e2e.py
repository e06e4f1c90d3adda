"""End to end, all real: the page does not depend on the control plane, and the alerting pipeline's
own death is noticed.

`erpctl up` (the ERP and the control plane, with the control plane's alert receiver) is SIGKILLed:
ControlPlaneDown and ErpDown must both reach the person on call (Alertmanager delivers them itself),
and Watchdog keeps reaching the dead-man receiver. Then Prometheus is SIGKILLed: Watchdog must stop
arriving there, which is what a dead-man service pages on. Configurations derived from monitors/
(tests/monitors/alerting.py).
"""

from __future__ import annotations

import signal
import time

from .alerting import (DEADMAN_REPEAT_SECONDS, FOR_SECONDS, PAGE_BOUND, RESEND_DELAY_SECONDS, SLACK_SECONDS,
                       shipped_page_seconds, start_pipeline)
from .conftest import Up

# Alertmanager keeps an alert Prometheus no longer sends for 4 resend delays, and the dead-man route
# repeats every DEADMAN_REPEAT_SECONDS: after that, no more Watchdog. The silence that proves it stopped:
# five of the dead-man route's repeat intervals without a heartbeat.
WATCHDOG_STOPS_BOUND = 4 * RESEND_DELAY_SECONDS + DEADMAN_REPEAT_SECONDS + SLACK_SECONDS
SILENCE_SECONDS = 5 * DEADMAN_REPEAT_SECONDS


def test_killed_erpctl_up_still_pages_and_a_killed_prometheus_stops_the_watchdog(tmp_path):
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    up = Up(tmp_path / "data", tmp_path / "erpctl-up.log")
    try:
        _scenario(tmp_path, up, WEBHOOK_TOKEN_FILE)
    finally:
        up.process.stop(signal.SIGKILL)


def _scenario(tmp_path, up: Up, token_name: str) -> None:
    pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{up.erp_port}", "erpctl": f"127.0.0.1:{up.ops_port}"},
                          up.ops_port, up.data_dir / token_name, shortened=("ErpDown", "ControlPlaneDown"))
    try:
        pipe.wait("both targets up", lambda: {(s["metric"]["job"], s["value"][1]) for s in pipe.query("up")}
                  == {("erp", "1"), ("erpctl", "1")}, 30)
        pipe.wait("Watchdog at the dead-man receiver", lambda: pipe.deadman.alerts("Watchdog"), FOR_SECONDS + 30)
        assert not pipe.oncall.alerts("Watchdog"), "Watchdog paged a person"
        assert not pipe.oncall.alerts("ErpDown") and not pipe.oncall.alerts("ControlPlaneDown")

        t_kill = time.monotonic()
        up.process.stop(signal.SIGKILL)
        took = {}
        for name in ("ControlPlaneDown", "ErpDown"):
            pipe.wait(f"{name} at the person's receiver", lambda n=name: pipe.oncall.alerts(n), PAGE_BOUND + 30)
            took[name] = pipe.oncall.alerts(name)[0][0] - t_kill
        for name, seconds in took.items():
            print(f"\n{name} detection to page with erpctl up SIGKILLed: {seconds:.1f} s (bound {PAGE_BOUND} s; "
                  f"with the shipped intervals at most {shipped_page_seconds(name):.0f} s)")
            assert FOR_SECONDS <= seconds <= PAGE_BOUND, f"{name} paged after {seconds:.1f}s"
        ((_, page),) = pipe.oncall.alerts("ControlPlaneDown")[:1]
        assert page["labels"]["instance"] == f"127.0.0.1:{up.ops_port}"
        assert page["annotations"]["runbook_url"].endswith("/ControlPlaneDown.md")

        heartbeats = pipe.deadman.alerts("Watchdog", since=t_kill)
        assert len(heartbeats) >= 2, f"Watchdog stopped reaching the dead-man receiver: {len(heartbeats)} after the kill"

        t_prom = time.monotonic()
        pipe.prometheus.stop(signal.SIGKILL)

        def last_heartbeat() -> float:
            return max(t for t, _ in pipe.deadman.alerts("Watchdog"))

        # Wait for the silence a dead-man service pages on (no fixed sleep for the worst case): it ends
        # SILENCE_SECONDS after the last heartbeat, at the latest that much after the last one allowed.
        deadline = t_prom + WATCHDOG_STOPS_BOUND + SILENCE_SECONDS + 1
        while time.monotonic() - last_heartbeat() < SILENCE_SECONDS and time.monotonic() < deadline:
            time.sleep(0.2)
        last = last_heartbeat()
        gap = time.monotonic() - last
        print(f"Watchdog's last heartbeat {last - t_prom:.1f} s after Prometheus was SIGKILLed "
              f"(bound {WATCHDOG_STOPS_BOUND} s); none for the {gap:.1f} s since")
        assert last - t_prom <= WATCHDOG_STOPS_BOUND, "Watchdog kept arriving after Prometheus died"
        assert gap >= SILENCE_SECONDS, f"only {gap:.1f}s without Watchdog"
    finally:
        pipe.stop()
