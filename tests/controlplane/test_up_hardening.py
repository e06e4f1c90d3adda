"""What `erpctl up` exposes: the ops console on its own address, /metrics and /alerts behind the
metrics token on both ports, and an ERP child process with an allow-listed environment."""

from __future__ import annotations

import os
import stat

import psutil
import requests

from controlplane import stack
from controlplane.console.app import create_app as create_console
from controlplane.release import runner
from tests.controlplane.cli_helpers import free_ports
from tests.controlplane.test_up import up_factory  # noqa: F401 - fixture

SECRETS = {"ERPCTL_BACKUP_PASSPHRASE": "backup passphrase 123", "AWS_SECRET_ACCESS_KEY": "aws-secret",
           "AWS_ACCESS_KEY_ID": "aws-id", "PGPASSWORD": "pg"}
TOKEN = "metrics token 0123456789"


def test_the_ops_console_requires_the_metrics_token_when_set(tmp_path):
    client = create_console(data_dir=tmp_path, metrics_token=TOKEN).test_client()
    for path in ("/metrics", "/alerts"):
        r = client.get(path)
        assert r.status_code == 401 and r.json["fix"] and "Bearer" in r.headers["WWW-Authenticate"]
        assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert create_console(data_dir=tmp_path).test_client().get("/metrics").status_code == 200  # no token set


def test_up_binds_the_ops_port_apart_and_gives_its_erp_child_only_what_it_needs(tmp_path, monkeypatch,
                                                                                 up_factory):  # noqa: F811
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("ERPCTL_METRICS_TOKEN", TOKEN)
    erp_port, ops_port = free_ports(2)
    up = up_factory("up", "--data-dir", tmp_path / "data", "--host", "127.0.0.1", "--ops-host", "127.0.0.2",
                    "--erp-port", erp_port, "--ops-port", ops_port)
    erp, ops = f"http://127.0.0.1:{erp_port}", f"http://127.0.0.2:{ops_port}"
    up.wait_ready(erp + "/readyz")
    assert requests.get(ops + "/healthz", timeout=5).status_code == 200
    try:
        requests.get(f"http://127.0.0.1:{ops_port}/healthz", timeout=5)
        raise AssertionError("the ops console answers on the ERP's address too")
    except requests.ConnectionError:
        pass
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for url in (erp + "/metrics", ops + "/metrics", ops + "/alerts"):
        assert requests.get(url, timeout=5).status_code == 401, url
        assert requests.get(url, headers=auth, timeout=5).status_code == 200, url
    assert "erp_receivables_open_amount" in requests.get(erp + "/metrics", headers=auth, timeout=5).text

    children = psutil.Process(up.proc.pid).children(recursive=True)
    assert children, "erpctl up serves the ERP as a child process"
    allowed = {*runner.CHILD_ENV, "ERP_DATABASE_URL", "ERP_FIELD_KEY", "ERP_METRICS_TOKEN", "ERP_MFA_ROLES", "ERP_TRUSTED_PROXIES",
               *stack.COMPANY_VARIABLES}
    for child in children:
        names = set(child.environ())
        assert not set(SECRETS) & names and "PYTHONPATH" not in names, (child.cmdline(), names)
        extra = {n for n in names - allowed if not n.startswith(runner.CHILD_ENV_PREFIXES)}
        assert not extra, (child.cmdline(), extra)
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700
