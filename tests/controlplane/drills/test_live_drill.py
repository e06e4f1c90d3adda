"""`erpctl drill run erp-killed --target live` on a real installation served by `erpctl up`: two approvals
recorded with `erpctl drill approve`, the ERP child of the live `erpctl up` killed for real, detected (the
probes and ErpDown in the drill's own Prometheus, scraping the live ports with the installation's metrics
token), recovered by the ErpDown runbook; afterwards the installation serves, the drill's user is
deactivated, the invariants hold, and the evidence log holds the approval check, the fault and the outcome.
Faults that destroy or restore data are refused on the live installation (exit 78) before anything runs."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
import uuid

import pytest
import requests

from controlplane.evidence import EvidenceLog
from tests.conftest import need
from tests.controlplane.cli_helpers import ok

from . import helpers as h

# the shipped multi-factor policy (admins and finance): the drill user, a service user, is not held to it
LIVE_ENV = {"ERPCTL_MFA_ROLES": "admin,finance", "LOGNAME": "ops-operator"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    if shutil.which("prometheus") is None:
        need("prometheus is not installed (apt-get install prometheus)")
    data = tmp_path_factory.mktemp("live") / "data"
    key = data.parent / "backup.key"
    env = {**LIVE_ENV, "ERPCTL_METRICS_TOKEN": uuid.uuid4().hex, "ERPCTL_BACKUP_KEY_FILE": str(key),
           "ERPCTL_ESCROW_PASSPHRASE": uuid.uuid4().hex}
    ok("erp", "migrate", "--data-dir", data, **env)
    ok("erp", "user", "add", "boss", "--role", "admin", "--password-stdin", "--data-dir", data,
         input=uuid.uuid4().hex + "\n", **env)
    ok("backup", "init", "--key-file", key, "--data-dir", data, **env)  # a healthy installation: backed up,
    ok("backup", "create", "--data-dir", data, **env)                     # its field key escrowed
    erp_port, ops_port = h.sandbox.free_ports(2)
    log = open(data.parent / "up.log", "ab")
    up = subprocess.Popen([h.erpctl_path(), "up", "--erp-port", str(erp_port), "--ops-port", str(ops_port),
                           "--data-dir", str(data)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          env=h.env(**env), start_new_session=True)
    url = f"http://127.0.0.1:{erp_port}"
    h.wait_for("the live ERP", lambda: _ready(url), timeout=90)
    ok("field-key", "escrow", "--data-dir", data, **env)
    status = h.erpctl("status", "--data-dir", data, **env)
    assert status.returncode == 0, status.stdout + status.stderr
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=1)
    window = f"{start.isoformat()}/{(start + dt.timedelta(hours=2)).isoformat()}"
    for by in ("Zhang Wei", "Li Na"):
        ok("drill", "approve", "erp-killed", "--by", by, "--window", window, "--data-dir", data, **env)
    try:
        yield data, url, env
    finally:
        h.erpctl("stop", "--data-dir", data, timeout=60, **env)
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        log.close()


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_erp_killed_on_the_live_installation_recovers_and_leaves_the_drill_user_deactivated(live):
    data, url, env = live
    t0 = time.monotonic()
    p = h.erpctl("drill", "run", "erp-killed", "--target", "live", "--alert-for", "0", "--json", "--data-dir", data,
                 timeout=h.DRILL_TIMEOUT, **env)
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    ran = h.Ran(data, p.returncode, events, p.stderr)
    assert p.returncode == 0, (p.stderr[-2000:], [e.get("text") for e in events])
    rec = ran.record
    assert rec["target"] == "live" and rec["state"] == "passed"
    assert sorted(a["by"] for a in rec["approvals"]) == ["Li Na", "Zhang Wei"] and rec["window"]
    assert {"name": "Li Na", "role": "approver"} in rec["participants"]
    m = rec["measured"]
    assert m["probe_detection_seconds"] > 0 and m["rto_seconds"] is not None and m["rpo_writes_lost"] == 0
    assert rec["detection"]["alert_outcome"] == "fired" and m["alert_firing_seconds"] > 0
    assert all(c["ok"] for c in rec["checks"]), rec["checks"]
    assert {c["name"] for c in rec["checks"] if c["phase"] == "after"} == {"readyz", "invariants", "business-write"}
    # the installation serves again, the invariants hold, the drill's user is deactivated
    assert _ready(url)
    assert h.erpctl("erp", "check", "--data-dir", data, **env).returncode == 0
    users = json.loads(ok("erp", "user", "list", "--json", "--data-dir", data, **env).stdout)
    rows = users.get("users", users) if isinstance(users, dict) else users
    (drill_user,) = [u for u in rows if u["username"].startswith("drill-")]
    assert drill_user["active"] is False and rec["cleanup"]["drill_user"]["active"] is False
    assert rec["cleanup"]["ok"] and rec["cleanup"]["live_serving"] is True
    # its writes stay, marked as drill data (own warehouse, partners, product named "Drill ..."), and listed
    assert m["acknowledged_writes"] > 0
    kinds = [r["kind"] for r in EvidenceLog(data).records()]
    assert "drill.live.approval" in kinds and "drill.fault" in kinds and kinds[-1] == "drill.end"
    assert not list((data / "drills" / rec["id"]).glob("sandbox")), "the drill's scratch directory is removed"
    assert time.monotonic() - t0 < 120


@pytest.mark.parametrize("scenario, why", [("rows-deleted", "destroys data"),
                                           ("field-key-lost", "restores it from the escrow copy")])
def test_a_fault_that_destroys_or_restores_data_is_refused_live(live, scenario, why):
    data, _, env = live
    p = h.erpctl("drill", "run", scenario, "--target", "live", "--data-dir", data, **env)
    assert p.returncode == 78 and why in p.stderr and "erpctl drill run " + scenario in p.stderr, p.stderr
    assert not (data / "drills" / "active.json").exists()


def _active_drill_users(data, env) -> list[dict]:
    users = json.loads(ok("erp", "user", "list", "--json", "--data-dir", data, **env).stdout)
    rows = users.get("users", users) if isinstance(users, dict) else users
    return [u for u in rows if u["username"].startswith("drill-") and u["active"]]


def test_a_killed_live_drill_has_its_user_deactivated_by_the_next_drill_command(live):
    data, url, env = live
    proc = subprocess.Popen([h.erpctl_path(), "drill", "run", "erp-killed", "--target", "live", "--alert-for", "0",
                             "--json", "--data-dir", str(data)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.env(**env))
    try:
        h.wait_for("the live drill's user created", lambda: proc.poll() is None and _active_drill_users(data, env),
                   timeout=90)
        act = h.active(data)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert act is not None and act.live_user and _active_drill_users(data, env), "killed while its user was active"
    r = h.erpctl("drill", "abort", "--data-dir", data, "--json", **env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _active_drill_users(data, env) == [] and h.active(data) is None
    rec = json.loads((data / "drills" / act.id / "record.json").read_text())
    assert rec["state"] == "aborted" and rec["cleanup"]["left_over"] == [], rec["cleanup"]
    h.wait_for("the live ERP serving", lambda: _ready(url), timeout=60)
