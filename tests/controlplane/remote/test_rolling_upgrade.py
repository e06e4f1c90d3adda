"""site.yml and upgrade.yml on real hosts: two app hosts (each its own sshd, host key and erp_root, its own
`erpctl up` on its own ports) against one PostgreSQL database, HAProxy in front (started by the haproxy role,
drained and re-enabled through its runtime API). site.yml serves release 1.0 through HAProxy and a second
run changes nothing; a host whose readiness fails mid-upgrade makes the play put 1.0 back everywhere; then
`erpctl fleet upgrade --to <this tree's release>` while a client keeps creating sales orders through
HAProxy: no failed request, both hosts on the new release, every acknowledged order in the database."""

from __future__ import annotations

import json
import statistics
import time

import pytest
from sqlalchemy import create_engine, text

from ..cli_helpers import ok
from .site import (OLD, Client, changed_tasks, current, run_fleet as fleet, haproxy_states, through_haproxy,
                   versions)

pytestmark = pytest.mark.postgres
BROKEN_READYZ = '''

# injected by the test: this build's readiness always fails
_built_create_app = create_app


def create_app(*args, **kwargs):
    app = _built_create_app(*args, **kwargs)
    app.view_functions["readyz"] = lambda: ({"ready": False, "checks": {"build": "broken"}}, 503)
    return app
'''



def test_site_serves_release_1_0_behind_haproxy_and_a_second_run_changes_nothing(rollout):
    r = fleet(rollout, "deploy")
    out = json.loads(r.stdout)
    assert r.returncode == 0, out.get("output", r.stdout)[-6000:] + r.stderr
    assert set(out["hosts"]) == {"app1", "app2", "lb1"} and out["changed"] > 0
    assert versions(rollout) == {"app1": OLD, "app2": OLD}
    assert through_haproxy(rollout) == {OLD}
    assert haproxy_states(rollout) == {"app1": "UP", "app2": "UP"}
    again = fleet(rollout, "deploy")
    out = json.loads(again.stdout)
    assert again.returncode == 0, out.get("output", "")[-6000:]
    assert out["changed"] == 0, changed_tasks(out["output"])
    record = json.loads((rollout["ctl"] / "evidence.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "fleet_playbook" and record["data"]["changed"] == 0


def test_a_host_whose_readiness_fails_mid_upgrade_puts_1_0_back_everywhere(rollout):
    app2 = rollout["roots"] / "app2"
    ok("release", "install", rollout["wheel"], "--data-dir", app2, timeout=300)
    built = sorted(app2.glob(f"releases/{rollout['new']}/env/lib/python*/site-packages/erp_core/app.py"))
    assert len(built) == 1, built
    original = built[0].read_text()
    built[0].write_text(original + BROKEN_READYZ)
    try:
        r = fleet(rollout, "upgrade", "--to", rollout["new"])
    finally:
        built[0].write_text(original)
    out = json.loads(r.stdout)
    assert r.returncode == 104, out.get("output", r.stdout)[-8000:] + r.stderr
    assert out["put_back"] and "app2" in json.loads(r.stderr)["error"]["detail"]
    assert current(rollout) == {"app1": OLD, "app2": OLD}
    assert versions(rollout) == {"app1": OLD, "app2": OLD}
    assert through_haproxy(rollout) == {OLD}
    assert haproxy_states(rollout) == {"app1": "UP", "app2": "UP"}
    status = json.loads(ok("--json", "upgrade", "status", "--data-dir", rollout["roots"] / "app1").stdout)
    assert status["status"] == "none" and status["last"]["status"] == "rolled_back"
    record = json.loads((rollout["ctl"] / "evidence.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "fleet_upgrade" and record["outcome"] == "failed"


def test_a_rolling_upgrade_under_business_traffic_fails_no_request_and_loses_no_write(rollout):
    with Client(rollout["lb"]) as client:
        time.sleep(1)
        t0 = time.monotonic()
        r = fleet(rollout, "upgrade", "--to", rollout["new"])
        seconds = time.monotonic() - t0
        time.sleep(1)
    out = json.loads(r.stdout)
    assert r.returncode == 0, out.get("output", r.stdout)[-8000:] + r.stderr
    lat = sorted(client.latencies)
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"\nrolling upgrade {OLD} -> {rollout['new']} of 2 hosts behind HAProxy: {seconds:.1f} s; "
          f"{len(lat)} order requests, {len(client.saved)} saved, {len(client.failures)} failed, "
          f"{client.retried} answered 503 maintenance (read-only for "
          f"{(client.read_only[-1] - client.read_only[0]) if client.read_only else 0:.1f} s) and sent again; "
          f"latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
    assert client.failures == [], client.failures[:5]
    assert len(client.saved) >= 20
    assert current(rollout) == {"app1": rollout["new"], "app2": rollout["new"]}
    assert versions(rollout) == {"app1": rollout["new"], "app2": rollout["new"]}
    assert through_haproxy(rollout) == {rollout["new"]}
    assert haproxy_states(rollout) == {"app1": "UP", "app2": "UP"}
    engine = create_engine(rollout["url"])
    try:
        with engine.connect() as c:
            rows = dict(c.execute(text("SELECT id, number FROM sales_orders WHERE id = ANY(:ids)"),
                                  {"ids": [o["id"] for o in client.saved]}).all())
    finally:
        engine.dispose()
    assert {o["id"]: o["number"] for o in client.saved} == rows
    status = json.loads(ok("--json", "upgrade", "status", "--data-dir", rollout["roots"] / "app1").stdout)
    assert status["status"] == "awaiting_contract"  # both releases can serve the schema until contract
    record = json.loads((rollout["ctl"] / "evidence.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "fleet_upgrade" and record["outcome"] == "ok"
    assert set(record["data"]["hosts"]) == {"app1", "app2"} and record["data"]["changed"] > 0
    again = fleet(rollout, "upgrade", "--to", rollout["new"])
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] == 0
