"""End to end, all real: Prometheus and Alertmanager (Debian's) on loopback scrape a real ERP and a
real control plane (`erpctl up`); the ERP is killed, and ErpDown must reach the person on call (the
`oncall` receiver, a real HTTP server run by the test) and the control plane's receiver within
for + scrape interval + evaluation interval + group_wait (plus a little slack for delivery), then
resolve once the ERP is back.

`erpctl up` restarts the ERP child it serves when it dies, so the `erp` target is a second process
serving the ERP alone on the same database (tests/monitors/erp_only.py), which stays down when
killed, while the control plane keeps running to receive the alert.

The configurations are derived from the examples in monitors/ (tests/monitors/alerting.py).
"""

from __future__ import annotations

import time

import requests

from .alerting import (EVAL_SECONDS, FOR_SECONDS, GROUP_INTERVAL_SECONDS, GROUP_WAIT_SECONDS, PAGE_BOUND,
                       SCRAPE_SECONDS, SLACK_SECONDS, shipped_page_seconds, start_pipeline)

RESOLVE_BOUND = SCRAPE_SECONDS + EVAL_SECONDS + GROUP_INTERVAL_SECONDS + SLACK_SECONDS


def _erp_down(ops_url: str, headers: dict, section: str) -> list[dict]:
    r = requests.get(ops_url + "/alerts", headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return [a for a in r.json()[section]
            if a["labels"].get("alertname") == "ErpDown" and a["labels"].get("job") == "erp"]


def test_erp_down_pages_the_person_and_reaches_the_control_plane_and_resolves(tmp_path, erpctl_up, erp_only):
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    token_file = erpctl_up.data_dir / WEBHOOK_TOKEN_FILE
    assert token_file.is_file(), "erpctl up did not create the webhook token"
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    ops = erpctl_up.ops_url

    erp = erp_only(erpctl_up.data_dir)
    pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{erp.port}", "erpctl": f"127.0.0.1:{erpctl_up.ops_port}"},
                          erpctl_up.ops_port, token_file)
    try:
        # Both targets scraped and healthy, the rules loaded, nothing about the ERP firing yet.
        pipe.wait("both targets up", lambda: {(s["metric"]["job"], s["value"][1]) for s in pipe.query("up")}
                  == {("erp", "1"), ("erpctl", "1")}, 30)
        pipe.wait("the recorded series", lambda: pipe.query("instance:erpctl_data_dir_filesystem_free:ratio"), 30)
        assert not _erp_down(ops, headers, "active") and not pipe.oncall.alerts("ErpDown")

        t_kill = time.monotonic()
        erp.kill()
        paged = pipe.wait("ErpDown at the person's receiver", lambda: pipe.oncall.alerts("ErpDown"), PAGE_BOUND + 30)
        recorded = pipe.wait("ErpDown at the control plane's receiver", lambda: _erp_down(ops, headers, "active"),
                             30) + paged
        print(f"\nErpDown detection to page: {paged:.1f} s from SIGKILL to the person's receiver, {recorded:.1f} s "
              f"to the control plane's (bound {PAGE_BOUND} s = for {FOR_SECONDS} + scrape {SCRAPE_SECONDS} + "
              f"evaluation {EVAL_SECONDS} + group_wait {GROUP_WAIT_SECONDS} + slack {SLACK_SECONDS}); with the "
              f"shipped intervals at most {shipped_page_seconds('ErpDown'):.0f} s")
        assert paged <= PAGE_BOUND, f"ErpDown took {paged:.1f}s to page (bound {PAGE_BOUND}s)"
        assert pipe.oncall.alerts("ErpDown")[0][0] - t_kill >= FOR_SECONDS, "paged before its `for` elapsed"
        ((_, page),) = pipe.oncall.alerts("ErpDown")[:1]
        assert page["labels"]["instance"] == f"127.0.0.1:{erp.port}" and page["labels"]["severity"] == "page"
        assert page["annotations"]["runbook_url"] == "https://erp-controlplane.dev/runbooks/ErpDown.md"

        (alert,) = _erp_down(ops, headers, "active")
        assert alert["status"] == "firing"
        assert alert["labels"]["severity"] == "page" and alert["labels"]["team"] == "ops"
        assert alert["labels"]["instance"] == f"127.0.0.1:{erp.port}"
        assert alert["annotations"]["summary"] == "The ERP is down"
        assert f"127.0.0.1:{erp.port}" in alert["annotations"]["description"]
        assert alert["receiver"] == "erpctl-oncall"
        assert alert.get("runbook_path", "").endswith("runbooks/ErpDown.md")
        assert alert["startsAt"] == page["startsAt"]

        erp.start()  # the same port: Prometheus' target
        t_back = time.monotonic()
        resolved = pipe.wait("ErpDown resolved at the control plane's receiver",
                             lambda: not _erp_down(ops, headers, "active")
                             and _erp_down(ops, headers, "recently_resolved"), RESOLVE_BOUND + 30)
        print(f"ErpDown resolution time: {resolved:.1f} s from the ERP answering again (bound {RESOLVE_BOUND} s)")
        assert resolved <= RESOLVE_BOUND, f"resolving took {resolved:.1f}s (bound {RESOLVE_BOUND}s)"
        (done,) = _erp_down(ops, headers, "recently_resolved")
        assert done["status"] == "resolved" and done["startsAt"] == alert["startsAt"]
        pipe.wait("ErpDown resolved at the person's receiver",
                  lambda: pipe.oncall.alerts("ErpDown", "resolved", since=t_back), 30)
    finally:
        pipe.stop()
