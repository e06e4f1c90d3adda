"""drill.yml and rotate-secrets.yml on the deployed site (site.py: two app hosts on one PostgreSQL database,
HAProxy in front): `erpctl fleet drill` runs a drill on one app host in its sandbox and brings its signed
reports back, verified on the control host; `erpctl fleet rotate-secrets --yes` rotates the business probe's
password while a client writes through HAProxy (no failed request, the old password refused), and refuses
the field key with how to rotate it by hand. The site is left serving on both hosts with its release."""

from __future__ import annotations

import json
import stat

import pytest

from ..cli_helpers import erpctl, ok
from .site import Client, get, haproxy_states, run_fleet, through_haproxy, versions

pytestmark = pytest.mark.postgres


def probe_login(site: dict, host: str) -> dict:
    return json.loads((site["roots"] / host / "probe-login.json").read_text())


def login(site: dict, host: str, who: dict) -> int:
    status, _, _ = get(f"http://127.0.0.1:{site['ports'][host]}/api/v1/auth/login",
                       body={"username": who["username"], "password": who["password"]})
    return status


def test_a_drill_on_an_app_host_brings_its_signed_report_back(deployed):
    release = versions(deployed)
    r = run_fleet(deployed, "drill", "erp-killed", "--host", "app2", "--fresh", "--scale", "0", "--detect", "probes")
    out = json.loads(r.stdout)
    assert r.returncode == 0, out.get("output", r.stdout)[-8000:] + r.stderr
    d = out["drill"]
    m = d["measured"]
    print(f"\nfleet drill erp-killed on app2: {out['seconds']} s; detection {m['detection_seconds']} s, "
          f"RTO {m['rto_seconds']} s, RPO {m['rpo_writes_lost']} write(s) / {m['rpo_seconds']} s")
    assert d["host"] == "app2" and d["scenario"] == "erp-killed" and d["state"] == "passed" and d["verified"]
    assert m["detection_seconds"] > 0 and m["rto_seconds"] > 0 and m["rpo_writes_lost"] == 0
    assert out["hosts"]["app2"]["changed"] > 0 and out["hosts"]["app1"]["changed"] == 0  # app1: only checked
    where = deployed["ctl"] / "fleet" / "drills" / "app2" / d["drill"]
    assert d["directory"] == str(where)
    assert {"record.json", "report-en.json", "report-en.html"} <= {p.name for p in where.iterdir()}
    checked = erpctl("--json", "evidence", "check-file", where / "report-en.html", "--log", where / "evidence")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["match"]["kind"] == "drill.report"
    assert json.loads((where / "report-en.json").read_text())["record"]["state"] == "passed"
    ok("evidence", "verify", "--data-dir", deployed["ctl"])
    record = json.loads((deployed["ctl"] / "evidence.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "fleet_drill" and record["outcome"] == "ok"
    assert record["data"]["drill"]["measured"] == m and "output" not in record["data"]
    assert versions(deployed) == release and haproxy_states(deployed) == {"app1": "UP", "app2": "UP"}


def test_the_field_key_is_refused_with_how_to_rotate_it_by_hand(deployed):
    keys = {h: (deployed["roots"] / h / "field.key").read_text() for h in ("app1", "app2")}
    before = probe_login(deployed, "app1")
    r = run_fleet(deployed, "rotate-secrets", "--yes", "--secret", "field-key")
    assert r.returncode == 59, r.stdout[-6000:] + r.stderr
    error = json.loads(r.stderr)["error"]
    assert "field-key cannot be rotated safely" in error["detail"] and "By hand" in error["detail"]
    assert {h: (deployed["roots"] / h / "field.key").read_text() for h in keys} == keys
    assert probe_login(deployed, "app1") == before
    assert not (deployed["ctl"] / "fleet" / "secrets.pending.yml").exists()
    record = json.loads((deployed["ctl"] / "evidence.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "fleet_rotate_secrets" and record["outcome"] == "failed"
    assert record["data"]["refused"] == ["field-key"] and record["data"]["rotated"] == []


def test_rotating_the_probe_password_under_traffic_fails_no_request(deployed):
    release = versions(deployed)
    old = probe_login(deployed, "app1")
    assert probe_login(deployed, "app2")["password"] == old["password"]
    with Client(deployed["lb"]) as client:
        r = run_fleet(deployed, "rotate-secrets", "--yes")
    out = json.loads(r.stdout)
    assert r.returncode == 0, out.get("output", r.stdout)[-8000:] + r.stderr
    print(f"\nrotate-secrets (probe password) of 2 hosts: {out['seconds']} s; {len(client.latencies)} order "
          f"requests through HAProxy, {len(client.failures)} failed")
    assert client.failures == [] and len(client.saved) >= 5
    assert out["rotated"] == ["probe-password"] and out["changed"] >= 3
    new = probe_login(deployed, "app1")
    assert new["username"] == old["username"] and new["password"] != old["password"]
    assert probe_login(deployed, "app2") == new
    assert login(deployed, "app2", new) == 200
    assert login(deployed, "app1", old) == 401  # the old password no longer works
    secrets_file = deployed["ctl"] / "fleet" / "secrets.yml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600 and new["password"] in secrets_file.read_text()
    evidence = (deployed["ctl"] / "evidence.jsonl").read_text()
    assert old["password"] not in evidence and new["password"] not in evidence
    assert old["password"] not in out["output"] and new["password"] not in out["output"]
    record = json.loads(evidence.splitlines()[-1])
    assert record["kind"] == "fleet_rotate_secrets" and record["outcome"] == "ok"
    assert versions(deployed) == release and through_haproxy(deployed) == set(release.values())
    assert haproxy_states(deployed) == {"app1": "UP", "app2": "UP"}
