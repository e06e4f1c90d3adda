"""erpctl erp user list|passwd|logout|deactivate, run as the real console script: the ERP reached
through erp_core.ops only, every change in the ERP's audit log and in the evidence log."""

from __future__ import annotations

import json

from tests.controlplane.cli_helpers import PASSWORD, erpctl, ok, ok_json
from tests.controlplane.test_cli import api, login


def _evidence_kinds(data) -> list[str]:
    return [json.loads(line)["kind"] for line in (data / "evidence.jsonl").read_text().splitlines() if line]


def test_user_commands(tmp_path):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    for name, role in (("root", "admin"), ("bob", "sales")):
        ok("erp", "user", "add", name, "--role", role, "--password-stdin", "--data-dir", data, input=PASSWORD + "\n")
    _, client = api(data)
    bob = login(client, "bob")
    assert client.get("/api/v1/me", headers=bob).status_code == 200

    rows = ok_json("erp", "user", "list", "--data-dir", data)
    assert [(r["username"], r["role"], r["active"]) for r in rows] == [("bob", "sales", True), ("root", "admin", True)]
    assert rows[0]["last_login"] is not None and rows[1]["last_login"] is None and "mfa" in rows[0]
    human = ok("erp", "user", "list", "--data-dir", data).stdout
    assert "USERNAME" in human and "never" in human

    # an operator's reset: a printed temporary password, forced change, sessions ended
    reset = ok_json("erp", "user", "passwd", "bob", "--data-dir", data)
    temporary = reset["temporary_password"]
    assert len(temporary) >= 12 and reset["sessions_ended"] == 1
    assert client.get("/api/v1/me", headers=bob).status_code == 401
    r = client.post("/api/v1/auth/login", json={"username": "bob", "password": temporary})
    assert r.status_code == 200 and r.json["must_change_password"] is True
    # one read from stdin, refused by the policy
    r = erpctl("erp", "user", "passwd", "bob", "--password-stdin", "--data-dir", data, input="qwertyuiop123\n")
    assert r.returncode == 2 and "common passwords" in r.stderr and "fix:" in r.stderr
    r = erpctl("erp", "user", "passwd", "nobody", "--data-dir", data)
    assert r.returncode == 4 and "no user 'nobody'" in r.stderr

    root = login(client, "root")
    out = ok_json("erp", "user", "logout", "root", "--data-dir", data)
    assert out["sessions_ended"] == 1 and client.get("/api/v1/me", headers=root).status_code == 401

    r = erpctl("erp", "user", "deactivate", "root", "--data-dir", data)
    assert r.returncode == 5 and "last active administrator" in r.stderr
    assert ok_json("erp", "user", "deactivate", "bob", "--data-dir", data)["active"] is False
    assert client.post("/api/v1/auth/login", json={"username": "bob", "password": temporary}).status_code == 401

    assert _evidence_kinds(data) == ["erp.user.passwd", "erp.user.logout", "erp.user.deactivate"]
    assert temporary not in (data / "evidence.jsonl").read_text()
    audit = client.get("/api/v1/audit-log?entity=users&limit=50", headers=login(client, "root")).json["items"]
    erpctl_rows = [(a["action"], (a["after"] or {}).get("event")) for a in audit if a["actor"] == "erpctl"]
    assert ("logout", "password_reset") in erpctl_rows and ("logout", "logout_everywhere") in erpctl_rows
    assert any(a["action"] == "update" and a["after"].get("active") is False for a in audit if a["actor"] == "erpctl")
    ok("evidence", "verify", "--data-dir", data)
