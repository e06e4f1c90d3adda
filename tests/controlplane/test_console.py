"""The ops console's pages without a browser (Flask's test client over the app `erpctl up` serves):
its own accounts made with `erpctl console user add` (argon2id, a 0600 file), the login with its
throttle and cookie flags, CSRF on every POST, the auditor who sees no action and gets 403 on
each, an operator's action that runs the real erpctl and is recorded with its name, hostile input
on every form (never a 500, scripts shown back as text), and the JSON endpoints kept for machines."""

from __future__ import annotations

import json
import re
import stat
import time

import pytest

from controlplane import layout
from controlplane.console import users
from controlplane.console.app import create_app
from controlplane.console.pages import THROTTLE_FAILURES
from controlplane.errors import ConsoleUserRefused
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import erpctl, ok_json

OPERATOR, AUDITOR = ("olga", "operator pass 1"), ("audrey", "auditor pass 12")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
HOSTILE = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "' OR 1=1 --", "%00\x00", "../../etc/passwd",
           "{{7*7}}", "😀" * 300, "a" * 5000, "2026-13-45", "-1"]
PAGES = ["/console/", "/console/backups", "/console/upgrade", "/console/runbook-runs", "/console/drills",
         "/console/evidence"]


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    users.add(d, OPERATOR[0], "operator", OPERATOR[1])
    users.add(d, AUDITOR[0], "auditor", AUDITOR[1])
    return d


def app_for(data_dir):
    return create_app({}, data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'erp.sqlite3'}")


def csrf_of(client, path="/console/login") -> str:
    return CSRF_RE.search(client.get(path).text).group(1)


def logged_in(data_dir, who, app=None):
    client = (app or app_for(data_dir)).test_client()
    r = client.post("/console/login", data={"csrf": csrf_of(client), "name": who[0], "password": who[1]})
    assert r.status_code == 303, r.text
    return client


def test_console_accounts_are_made_with_erpctl_and_kept_as_argon2_hashes_in_a_private_file(tmp_path):
    d = tmp_path / "data"
    r = ok_json("console", "user", "add", "ops1", "--role", "operator", "--password-stdin", "--data-dir", d,
                input="a long operator password\n")
    assert r == {"name": "ops1", "role": "operator"}
    path = layout.path(d, "console_users")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())["users"]["ops1"]
    assert stored["role"] == "operator" and stored["password_hash"].startswith("$argon2id$")
    assert "a long operator password" not in path.read_text()
    done = erpctl("console", "user", "add", "ops1", "--role", "auditor", "--password-stdin", "--data-dir", d,
                  input="another long password")
    assert done.returncode == 54 and "already exists" in done.stderr, done.stderr
    for name, role, password, said in (("ops2", "operator", "short", "shorter than 12"),
                                       ("ops 2", "auditor", "a long enough password", "not a valid"),
                                       ("ops3", "admin", "a long enough password", "unknown role"),
                                       ("ops4", "auditor", "OPS4", "shorter than 12")):
        with pytest.raises(ConsoleUserRefused, match=said) as refused:
            users.add(d, name, role, password)
        assert refused.value.exit_code == 53
    assert [u["name"] for u in ok_json("console", "user", "list", "--data-dir", d)["users"]] == ["ops1"]
    assert users.authenticate(d, "ops1", "a long operator password")["role"] == "operator"
    assert users.authenticate(d, "ops1", "wrong password here") is None


def test_login_sets_a_strict_httponly_cookie_and_a_wrong_password_is_throttled(data_dir):
    client = app_for(data_dir).test_client()
    assert client.get("/console/backups").headers["Location"].startswith("/console/login")
    token = csrf_of(client)
    assert client.post("/console/login", data={"name": OPERATOR[0], "password": OPERATOR[1]}).status_code == 400
    for _ in range(THROTTLE_FAILURES):
        r = client.post("/console/login", data={"csrf": token, "name": OPERATOR[0], "password": "wrong password!"})
        assert r.status_code == 401 and "Wrong name or password." in r.text
    r = client.post("/console/login", data={"csrf": token, "name": OPERATOR[0], "password": OPERATOR[1]})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0  # even the right password waits
    other = logged_in(data_dir, AUDITOR)  # another name from another client is not held off
    cookie = other.get_cookie("erpctl_console", path="/console")
    assert cookie.http_only and cookie.same_site == "Strict"


def test_an_auditor_reads_every_page_sees_no_action_and_gets_403_on_each(data_dir):
    client = logged_in(data_dir, AUDITOR)
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, path
        assert "/console/actions/" not in r.text, path
    token = csrf_of(client, "/console/")
    for action, form in (("backup", {}), ("verify", {"backup": "latest", "level": "1"}),
                         ("upgrade", {"step": "apply", "confirm": "apply"}), ("drill", {"scenario": "erp-killed"})):
        r = client.post(f"/console/actions/{action}", data={"csrf": token, **form})
        assert r.status_code == 403 and "auditor" in r.text, action
    assert not layout.path(data_dir, "console_jobs").exists()


def test_an_operator_starts_a_real_erpctl_command_recorded_with_their_name(data_dir):
    client = logged_in(data_dir, OPERATOR)
    assert 'action="/console/actions/backup"' in client.get("/console/backups").text
    token = csrf_of(client, "/console/backups")
    assert client.post("/console/actions/backup", data={}).status_code == 400  # no CSRF token
    r = client.post("/console/actions/upgrade", data={"csrf": token, "step": "apply", "contract": "yes",
                                                     "confirm": "apply"}, follow_redirects=True)
    assert "Type &#39;contract&#39; to confirm the point of no return." in r.text  # nothing started
    r = client.post("/console/actions/backup", data={"csrf": token})
    assert r.status_code == 303
    job_page = r.headers["Location"]
    deadline = time.monotonic() + 120
    while 'id="exit-code">running<' in (page := client.get(job_page).text) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "erpctl backup create" in page and "there is no backup repository" in page  # the CLI's own words
    assert re.search(r'id="exit-code">27<', page), page
    rec = [r for r in EvidenceLog(data_dir).records() if r["kind"] == "console.action"]
    assert len(rec) == 1 and rec[0]["actor"] == OPERATOR[0] and rec[0]["data"]["command"] == "erpctl backup create"
    found = client.get("/console/evidence?kind=console.action&q=backup").text
    assert "erpctl backup create" in found and "1 record(s) match" in found


def test_hostile_input_on_every_form_never_answers_500_and_is_shown_back_as_text(data_dir):
    client = logged_in(data_dir, OPERATOR)
    token = csrf_of(client, "/console/")
    for bad in HOSTILE:
        for path in [f"/console/evidence?kind={bad}&q={bad}&since={bad}&until={bad}", f"/console/runbooks/{bad}",
                     f"/console/drills/{bad}/report", f"/console/jobs/{bad}", f"/console/drills/x/report?lang={bad}",
                     f"/console/login?next={bad}"]:
            r = client.get(path)
            assert r.status_code < 500, (path, r.status_code)
            assert "<script>alert(1)</script>" not in r.text and "<img src=x" not in r.text, path
        for action, form in (("verify", {"backup": bad, "level": bad}), ("upgrade", {"step": bad, "confirm": bad}),
                             ("drill", {"scenario": bad}), (bad, {})):
            r = client.post(f"/console/actions/{action}", data={"csrf": token, **form})
            assert r.status_code in (303, 404), (action, bad, r.status_code)
        r = client.post("/console/lang", data={"csrf": token, "lang": bad})
        assert r.status_code == 400
    shown = client.get("/console/evidence", query_string={"q": HOSTILE[0]}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert not layout.path(data_dir, "console_jobs").exists()  # no bad form started anything
    anon = app_for(data_dir).test_client()
    token = csrf_of(anon)
    for bad in HOSTILE:
        r = anon.post("/console/login", data={"csrf": token, "name": bad, "password": bad, "next": bad})
        assert r.status_code in (401, 429) and "<script>alert(1)</script>" not in r.text


def test_the_language_follows_the_browser_then_the_account(data_dir):
    client = app_for(data_dir).test_client()
    page = client.get("/console/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert '<html lang="zh-CN">' in page and "登录运维控制台" in page
    client = logged_in(data_dir, AUDITOR)
    assert "Evidence log" in client.get("/console/evidence").text
    client.post("/console/lang", data={"csrf": csrf_of(client, "/console/"), "lang": "zh_Hans"})
    assert users.load(data_dir)[AUDITOR[0]]["lang"] == "zh_Hans"
    again = logged_in(data_dir, AUDITOR)  # a new session: the account's language
    assert "证据日志" in again.get("/console/evidence", headers={"Accept-Language": "en"}).text


def test_the_json_endpoints_for_machines_are_unchanged(data_dir):
    client = app_for(data_dir).test_client()
    assert client.get("/healthz").json["status"] == "ok"
    assert client.get("/").json["links"]["console"] == "/console/"
    assert client.post("/alerts/webhook", json={}).status_code == 401
    assert client.get("/alerts").json == {"active": [], "recently_resolved": []}
    assert client.get("/metrics").status_code == 200


def test_the_drills_page_follows_a_running_drill_and_serves_its_reports(data_dir):
    import shutil

    from tests.controlplane.drills.conftest import FIXTURES, PASSED

    shutil.copytree(FIXTURES, data_dir / "drills")
    client = logged_in(data_dir, AUDITOR)
    page = client.get("/console/drills").text
    assert 'http-equiv="refresh"' not in page and PASSED in page
    report = client.get(f"/console/drills/{PASSED}/report?lang=zh")
    assert report.status_code == 200 and "应急演练报告" in report.text
    assert "default-src 'none'" in report.headers["Content-Security-Policy"]
    record = layout.path(data_dir, "drill_record", id=PASSED)
    record.write_text(json.dumps({**json.loads(record.read_text()), "state": "running"}))
    page = client.get("/console/drills").text
    assert '<meta http-equiv="refresh" content="5">' in page and 'id="refreshing"' in page
    assert client.get("/console/drills/no-such-drill/report").status_code == 404
