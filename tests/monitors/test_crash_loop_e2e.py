"""End to end, all real: the ERP `erpctl up` serves (the current release's child process) crashes
again and again (SIGKILLed each time it serves again); real Prometheus and Alertmanager with the
shipped rules and routes (tests/monitors/alerting.py) must page the person on call with
ErpCrashLooping (erpctl_erp_restarts_total) and ErpDown."""

from __future__ import annotations

import json
import os
import signal
import time

import requests

from tests.controlplane.cli_helpers import free_ports
from tests.controlplane.test_up import Up, _release_data_dir, _serving, _until

from .alerting import FOR_SECONDS, PAGE_BOUND, shipped_page_seconds, start_pipeline

CRASHES = 4


def test_a_crash_looping_erp_pages_erp_crash_looping_and_erp_down(tmp_path):
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE
    from tests.controlplane.test_release import WHEEL_1_0

    data = _release_data_dir(tmp_path, WHEEL_1_0)
    erp_port, ops_port = free_ports(2)
    erp = f"http://127.0.0.1:{erp_port}"
    up = Up("--json", "up", "--data-dir", data, "--erp-port", erp_port, "--ops-port", ops_port, tmp_path=tmp_path)
    pipe = None
    try:
        pid = json.loads(up.wait_for_line(r"^\{.*\"event\": \"started\".*\}$").group(0))["release"]["pid"]
        pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{erp_port}", "erpctl": f"127.0.0.1:{ops_port}"},
                              ops_port, data / WEBHOOK_TOKEN_FILE, shortened=("ErpDown", "ErpCrashLooping"))
        pipe.wait("both targets up", lambda: {(s["metric"]["job"], s["value"][1]) for s in pipe.query("up")}
                  == {("erp", "1"), ("erpctl", "1")}, 30)
        t_first = time.monotonic()
        restarted = []  # when the ERP served again after each crash
        for crash in range(CRASHES):
            os.kill(pid, signal.SIGKILL)
            if crash == CRASHES - 1:
                break
            pid = _until(f"the ERP restarted after crash {crash + 1}",
                         lambda old=pid: (lambda s: s["state"] == "serving" and s["pid"] != old
                                          and requests.get(erp + "/healthz", timeout=2).ok and s["pid"])(_serving(data)),
                         timeout=60)
            restarted.append(time.monotonic())
        took = {}
        for name in ("ErpCrashLooping", "ErpDown"):
            pipe.wait(f"{name} at the person's receiver", lambda n=name: pipe.oncall.alerts(n), 90)
            took[name] = pipe.oncall.alerts(name)[0][0] - t_first
        restarts = pipe.query("erpctl_erp_restarts_total")
        assert restarts and float(restarts[0]["value"][1]) >= 3, restarts
        print(f"\ncrash loop ({CRASHES} SIGKILLs, back-off 1, 2, 4 s): ErpCrashLooping paged {took['ErpCrashLooping']:.1f} s "
              f"and ErpDown {took['ErpDown']:.1f} s after the first crash (for {FOR_SECONDS} s here; shipped: "
              f"ErpDown within {shipped_page_seconds('ErpDown'):.0f} s of being down most of a minute, "
              f"ErpCrashLooping within {shipped_page_seconds('ErpCrashLooping'):.0f} s of the 3rd restart)")
        ((_, page),) = pipe.oncall.alerts("ErpCrashLooping")[:1]
        assert page["labels"]["instance"] == f"127.0.0.1:{ops_port}" and page["labels"]["severity"] == "page"
        assert page["annotations"]["runbook_url"].endswith("/ErpCrashLooping.md")
        assert t_first + took["ErpCrashLooping"] <= restarted[2] + PAGE_BOUND, "ErpCrashLooping late"
    finally:
        if pipe is not None:
            pipe.stop()
        up.close()
