"""End to end, all real: an installation served by `erpctl up` holds stock received through the ERP; an
on-hand row is then edited behind the ERP's back with plain SQL. `erpctl erp check` run by hand (exit 13)
records its result, so InvariantViolations fires in a real Prometheus with the shipped rules and reaches
the person on call through Alertmanager's shipped routes without waiting for the hourly check. The
on-call engineer then follows the runbook the page links to, its commands in order as written (Confirm
steps: findings; Recover steps: each must succeed; manual steps are people's work), and the alert
resolves: a resolved notification reaches the person on call.

Timings of the test copy (tests/monitors/alerting.py): scrape and evaluation every second, the alert's
`for` 5 s.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import time

import requests

from tests.controlplane.cli_helpers import PASSWORD, erpctl, ok

from .alerting import PAGE_BOUND, SLACK_SECONDS, shipped_page_seconds, start_pipeline
from .conftest import Up
from .helpers import parse_runbook, runbook_file

ALERT = "InvariantViolations"


def test_a_stock_row_edited_behind_the_erps_back_pages_and_the_runbook_resolves_it(tmp_path):
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    data = tmp_path / "data"
    up = Up(data, tmp_path / "erpctl-up.log")
    pipe = None
    try:
        _receive_stock(up, data)
        pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{up.erp_port}", "erpctl": f"127.0.0.1:{up.ops_port}"},
                              up.ops_port, data / WEBHOOK_TOKEN_FILE, shortened=(ALERT,))
        pipe.wait("both targets up", lambda: {(s["metric"]["job"], s["value"][1]) for s in pipe.query("up")}
                  == {("erp", "1"), ("erpctl", "1")}, 30)
        with sqlite3.connect(data / "erp.sqlite3") as c:  # behind the ERP's back
            assert c.execute("UPDATE stock_levels SET quantity = quantity + 7 WHERE warehouse_id = "
                             "(SELECT min(warehouse_id) FROM stock_levels)").rowcount == 2

        checked = erpctl("erp", "check", "--data-dir", data)
        t_detected = time.monotonic()
        assert checked.returncode == 13 and checked.stdout.count("[on_hand_matches_moves]") == 2, checked.stdout
        pipe.wait(f"{ALERT} at the person's receiver", lambda: pipe.oncall.alerts(ALERT), PAGE_BOUND + 30)
        ((t_page, page), *_) = pipe.oncall.alerts(ALERT)
        print(f"\n{ALERT}: detection (erpctl erp check by hand) to page {t_page - t_detected:.1f} s (bound "
              f"{PAGE_BOUND} s here; with the shipped intervals at most {shipped_page_seconds(ALERT):.0f} s, not "
              "the hourly schedule)")
        assert t_page - t_detected <= PAGE_BOUND
        assert page["labels"]["severity"] == "page" and "found 2 violation(s)" in page["annotations"]["description"]

        t_fix = time.monotonic()
        ran = _follow_runbook(page["annotations"]["runbook_url"], data)
        assert ran["erpctl erp repair stock-cache --yes"] == 0 and ran["erpctl erp check"] == 0, ran
        pipe.wait(f"{ALERT} resolved at the person's receiver",
                  lambda: pipe.oncall.alerts(ALERT, status="resolved", since=t_fix), PAGE_BOUND + 30)
        resolved = pipe.oncall.alerts(ALERT, status="resolved", since=t_fix)[0][0]
        print(f"{ALERT}: runbook followed in {ran['seconds']:.1f} s; resolved notification "
              f"{resolved - t_fix:.1f} s after the runbook's first command")
        assert resolved - t_fix <= ran["seconds"] + SLACK_SECONDS + 5
        status = json.loads(erpctl("--json", "status", "--data-dir", data, "--erp-url", up.erp_url,
                                   timeout=60).stdout)
        assert status["invariants"]["violations"] == 0
        assert "invariant violations" not in {a["what"] for a in status["attention"]}
    finally:
        if pipe is not None:
            pipe.stop()
        up.process.stop()


def _receive_stock(up: Up, data) -> None:
    """Two products bought and received into a warehouse through the ERP's API."""
    ok("erp", "user", "add", "admin", "--role", "admin", "--password-stdin", "--data-dir", data, input=PASSWORD)
    api = up.erp_url + "/api/v1"
    token = requests.post(f"{api}/auth/login", json={"username": "admin", "password": PASSWORD}, timeout=10)
    headers = {"Authorization": f"Bearer {token.json()['token']}"}

    def post(path, body=None, expect=201):
        r = requests.post(api + path, json=body or {}, headers=headers, timeout=30)
        assert r.status_code == expect, f"{path}: {r.status_code} {r.text}"
        return r.json()

    warehouse = post("/warehouses", {"code": "MAIN", "name": "Main"})["id"]
    supplier = post("/partners", {"code": "S1", "name": "Supplier", "is_supplier": True})["id"]
    products = [post("/products", {"sku": sku, "name": sku, "sale_price": "10.00", "tax_code": "VAT13"})["id"]
                for sku in ("A-1", "B-1")]
    po = post("/purchase-orders", {"partner_id": supplier, "warehouse_id": warehouse, "lines": [
        {"product_id": p, "quantity": "12", "unit_price": "4.00"} for p in products]})
    post(f"/purchase-orders/{po['id']}/confirm", expect=200)
    post(f"/purchase-orders/{po['id']}/receive", expect=200)


def _follow_runbook(url: str, data) -> dict:
    """Run the runbook's erpctl blocks in order, as a runbook engine does: Confirm and Check recovery
    commands may fail (findings), a Recover command must not; steps without commands are people's work.
    {command: exit code, "seconds": the time it all took}."""
    rb = parse_runbook(runbook_file(url))
    ran, t0 = {}, time.monotonic()
    for step in rb.steps[1:]:
        for block in (b for b in step.blocks if b.lang == "erpctl"):
            for line in block.commands:
                r = erpctl(*shlex.split(line)[1:], ERPCTL_DATA_DIR=str(data))
                ran[line.split(" --reason")[0]] = r.returncode
                if step.kind == "Recover":
                    assert r.returncode == 0, f"step {step.number}: {line} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    ran["seconds"] = time.monotonic() - t0
    return ran
