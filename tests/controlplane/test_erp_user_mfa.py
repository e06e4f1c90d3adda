"""`erpctl erp user mfa-reset` and the installation's `mfa_roles`, which `erpctl up` gives the ERP."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import create_engine, text

from controlplane import installation as I
from controlplane import stack
from controlplane.config import Target
from controlplane.errors import SettingInvalid
from erp_core.db import default_sqlite_url
from tests.controlplane.cli_helpers import PASSWORD, env, erpctl, erpctl_path, ok, ok_json
from tests.controlplane.test_cli import api
from tests.erp_core.test_mfa import enrol_by_web


def test_mfa_reset_removes_a_users_second_factor_and_the_audit_log_says_who(tmp_path, monkeypatch):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    ok("erp", "user", "add", "carol", "--role", "finance", "--password-stdin", "--data-dir", data,
       input=PASSWORD + "\n")
    monkeypatch.setenv("ERP_MFA_ROLES", "admin,finance")
    app, client = api(data)
    enrol_by_web(SimpleNamespace(app=app), "carol")
    r = client.post("/api/v1/auth/login", json={"username": "carol", "password": PASSWORD})
    assert r.status_code == 401 and r.json["challenge"]

    done = ok_json("erp", "user", "mfa-reset", "carol", "--data-dir", data)
    assert done["username"] == "carol" and done["reset"] is True
    # the password alone now: no code asked; finance must enrol again (the web leads there)
    r = client.post("/api/v1/auth/login", json={"username": "carol", "password": PASSWORD})
    assert r.status_code == 403 and r.json["title"] == "Multi-factor enrolment required"
    again = ok("erp", "user", "mfa-reset", "carol", "--data-dir", data)
    assert "had no multi-factor login; nothing to reset" in again.stdout

    engine = create_engine(default_sqlite_url(data))
    with engine.connect() as c:
        rows = c.execute(text("SELECT actor, action, after FROM audit_log WHERE entity = 'mfa' ORDER BY id")).all()
    engine.dispose()
    events = [(actor, action, json.loads(after)["event"]) for actor, action, after in rows]
    assert events == [("carol", "create", "enrolled"), ("erpctl", "delete", "reset"), ("erpctl", "delete", "reset")]

    missing = erpctl("erp", "user", "mfa-reset", "nobody", "--data-dir", data)
    assert missing.returncode == 4 and "no user 'nobody'" in missing.stderr and "fix:" in missing.stderr


def test_mfa_roles_setting_reaches_the_erp_and_refuses_an_unknown_role(tmp_path):
    d = tmp_path / "data"
    assert I.Installation.open(d, environ={}).get("mfa_roles") == "admin,finance"
    assert I.Installation.open(d, environ={"ERPCTL_MFA_ROLES": " Finance , auditor"}).get("mfa_roles") == \
        "finance,auditor"
    assert I.Installation.open(d, environ={"ERPCTL_MFA_ROLES": "none"}).get("mfa_roles") == "none"
    with pytest.raises(SettingInvalid) as exc:
        I.Installation.open(d, environ={"ERPCTL_MFA_ROLES": "admin,overlord"}).get("mfa_roles")
    assert "mfa_roles" in exc.value.detail and "ERPCTL_MFA_ROLES" in exc.value.detail and exc.value.exit_code == 2
    opts = stack.UpOptions(Target(d, f"sqlite:///{d}/erp.sqlite3"), mfa_roles="finance")
    assert stack._erp_env(opts) == {"ERP_MFA_ROLES": "finance"}
    opts.metrics_token = "t0ken"
    assert stack._erp_env(opts) == {"ERP_MFA_ROLES": "finance", "ERP_METRICS_TOKEN": "t0ken"}
    opts.trusted_proxies = "10.0.0.5/32"
    assert stack._erp_env(opts)["ERP_TRUSTED_PROXIES"] == "10.0.0.5/32"



def test_the_company_settings_reach_the_erp_for_its_printed_documents(tmp_path):
    d = tmp_path / "data"
    inst = I.Installation.open(d, environ={"ERPCTL_COMPANY_NAME": " 杭州示例贸易有限公司 ",
                                           "ERPCTL_COMPANY_TAX_ID": "91330100MA2B000001"})
    company = tuple(inst.get(f"company_{k}") for k in ("name", "tax_id", "address", "bank_account"))
    assert company == ("杭州示例贸易有限公司", "91330100MA2B000001", None, None)
    opts = stack.UpOptions(Target(d, f"sqlite:///{d}/erp.sqlite3"), mfa_roles="finance", company=company)
    assert stack._erp_env(opts) == {"ERP_MFA_ROLES": "finance", "ERP_COMPANY_NAME": "杭州示例贸易有限公司",
                                    "ERP_COMPANY_TAX_ID": "91330100MA2B000001"}


def test_erpctl_up_gives_its_erp_the_mfa_roles(tmp_path):
    """The setting reaches the ERP that `erpctl up` serves (a child process with an allow-listed
    environment): with mfa_roles 'sales', sales must use a second factor there and finance not (the
    opposite of the ERP's own default)."""
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    for name, role in (("fiona", "finance"), ("sam", "sales")):
        ok("erp", "user", "add", name, "--role", role, "--password-stdin", "--data-dir", data, input=PASSWORD + "\n")
    proc = subprocess.Popen([erpctl_path(), "--json", "up", "--data-dir", str(data), "--erp-port", "0",
                             "--ops-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(ERPCTL_MFA_ROLES="sales"))
    try:
        erp = json.loads(proc.stdout.readline())["erp_url"].rstrip("/")
        deadline = time.monotonic() + 60
        while requests.get(erp + "/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the ERP was not ready within 60 s"
            time.sleep(0.2)
        finance = requests.post(erp + "/api/v1/auth/login", json={"username": "fiona", "password": PASSWORD},
                                timeout=30)
        assert finance.status_code == 200 and finance.json()["token"]
        sales = requests.post(erp + "/api/v1/auth/login", json={"username": "sam", "password": PASSWORD}, timeout=30)
        assert sales.status_code == 403 and sales.json()["title"] == "Multi-factor enrolment required"
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
