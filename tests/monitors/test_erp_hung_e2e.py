"""End to end, all real: the ERP `erpctl up` serves hangs (its child process SIGSTOPped: it accepts
connections and never answers). Real Prometheus and Alertmanager with the shipped rules and routes
(tests/monitors/alerting.py, ErpDown's `for` 5 s here) page the person on call with ErpDown; the
supervisor kills the hung child and serves again within its bound; the person gets the resolved
notification."""

from __future__ import annotations

import os
import signal
import time

import requests

from tests.controlplane.test_up import _serving, _until
from tests.controlplane.test_up_liveness import SERVING_AGAIN_BOUND

from .alerting import FOR_SECONDS, PAGE_BOUND, shipped_page_seconds, start_pipeline


def test_a_hung_erp_pages_erp_down_is_restarted_and_resolves(tmp_path, erpctl_up):
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    up, data = erpctl_up, erpctl_up.data_dir
    pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{up.erp_port}", "erpctl": f"127.0.0.1:{up.ops_port}"},
                          up.ops_port, data / WEBHOOK_TOKEN_FILE, shortened=("ErpDown",))
    hung = _serving(data)["pid"]
    try:
        pipe.wait("both targets up", lambda: {(s["metric"]["job"], s["value"][1]) for s in pipe.query("up")}
                  == {("erp", "1"), ("erpctl", "1")}, 30)
        t0 = time.monotonic()
        os.kill(hung, signal.SIGSTOP)
        pipe.wait("ErpDown at the person's receiver", lambda: pipe.oncall.alerts("ErpDown"), PAGE_BOUND + 10)
        paged = pipe.oncall.alerts("ErpDown")[0][0] - t0
        last_down = [0.0]  # when a probe last began and found the ERP not serving yet

        def serving_again():
            began = time.monotonic() - t0
            try:
                s = _serving(data)
                ok = s["state"] == "serving" and s["pid"] != hung and requests.get(up.erp_url + "/healthz", timeout=2).ok
            except (requests.RequestException, OSError, ValueError, KeyError):
                ok = False
            if not ok:
                last_down[0] = began
            return ok

        _until("the hung ERP killed and serving again", serving_again, timeout=SERVING_AGAIN_BOUND + 30)
        serving = time.monotonic() - t0  # seen serving by now; it began after last_down
        pipe.wait("ErpDown resolved at the person's receiver",
                  lambda: pipe.oncall.alerts("ErpDown", status="resolved"), PAGE_BOUND + 10)
        resolved = pipe.oncall.alerts("ErpDown", status="resolved")[0][0] - t0
        print(f"\nhung ERP (SIGSTOP): ErpDown paged {paged:.1f} s after the hang (for {FOR_SECONDS} s here; shipped: "
              f"within {shipped_page_seconds('ErpDown'):.0f} s), the supervisor served again after {serving:.1f} s "
              f"(bound {SERVING_AGAIN_BOUND:.0f} s), resolved notification {resolved:.1f} s after the hang")
        ((_, page),) = pipe.oncall.alerts("ErpDown")[:1]
        assert page["labels"]["severity"] == "page" and page["labels"]["instance"] == f"127.0.0.1:{up.erp_port}"
        assert page["annotations"]["runbook_url"].endswith("/ErpDown.md")
        assert paged <= PAGE_BOUND + 2, f"paged after {paged:.1f}s"  # a scrape's timeout: the hang shows at once
        assert serving <= SERVING_AGAIN_BOUND, f"{serving:.1f}s"
        # The order a person sees: paged, then the ERP back, then resolved. Serving began somewhere between
        # the last probe that found it down and the first that found it up, and a probe takes time of its
        # own, so the resolution is compared with the last moment the ERP was seen down.
        assert paged < last_down[0] < resolved, (paged, last_down[0], resolved)
        assert not os.path.exists(f"/proc/{hung}"), "the hung child was not killed"
    finally:
        pipe.stop()
