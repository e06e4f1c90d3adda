"""Multi-factor login through the API and the web pages (Flask's test client): the second step after
the password, a required role sent to enrolment and kept from everything else, wrong and replayed codes
refused and counted as failed logins, recovery codes used once and regenerated, the operator's reset,
the audit log, the secret encrypted at rest, service users excluded, the policy setting."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time

import pyotp
import pytest
from sqlalchemy import select, text

from erp_core.config import Settings
from erp_core.domain import mfa as rules
from erp_core.models import AuditLog
from erp_core.ops import mfa_reset
from erp_core.services import auth
from tests.conftest import FIELD_KEY, PASSWORD, Erp, fresh_database_url
from tests.erp_core.test_web import CSRF_RE, text_of

POLICY = "admin,finance"


class Authenticator:
    """The user's phone: the code of the earliest time step the ERP still accepts (now, one step back or
    ahead) that is later than the last code given; it waits for the clock once all of them are used."""

    def __init__(self, secret: str):
        self.totp = pyotp.TOTP(secret.replace(" ", ""))
        self.last: int | None = None

    def code(self) -> str:
        while True:
            now = dt.datetime.now(dt.timezone.utc)
            step = self.totp.timecode(now)
            low = step - 1 if now.timestamp() % 30 < 28 else step  # not one about to fall out of the window
            pick = low if self.last is None else max(self.last + 1, low)
            if pick <= step + 1:
                self.last = pick
                return self.totp.generate_otp(pick)
            time.sleep(0.25)

    def wrong_code(self) -> str:
        """A code of none of the steps the ERP accepts now."""
        step = self.totp.timecode(dt.datetime.now(dt.timezone.utc))
        valid = {self.totp.generate_otp(n) for n in range(step - 2, step + 3)}
        return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in valid)


@pytest.fixture
def mfa_erp(request, tmp_path, monkeypatch):
    """The ERP (SQLite) with the default policy: admin and finance must log in with a second factor."""
    monkeypatch.setenv("ERP_MFA_ROLES", POLICY)
    e = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    assert e.app.config["ERP_SETTINGS"].mfa_roles == {"admin", "finance"}
    yield e
    e.close()


def api_login(client, username, password=PASSWORD):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def api_code(client, challenge, code):
    return client.post("/api/v1/auth/login/code", json={"challenge": challenge, "code": code})


def challenge_of(client, username) -> str:
    r = api_login(client, username)
    assert r.status_code == 401 and r.json["title"] == "Second factor required", r.json
    assert "token" not in r.json and r.json["challenge_expires_at"]
    return r.json["challenge"]


class Browser:
    """One web session (its own cookie jar)."""

    def __init__(self, erp):
        self.client = erp.app.test_client()

    def csrf(self, path: str) -> str:
        return CSRF_RE.search(self.client.get(path).get_data(as_text=True)).group(1)

    def password(self, username, password=PASSWORD):
        return self.client.post("/app/login", data={"username": username, "password": password,
                                                    "csrf_token": self.csrf("/app/login")})

    def post(self, path, data, csrf_from=None):
        return self.client.post(path, data={**data, "csrf_token": self.csrf(csrf_from or path)})

    def enrol_first(self) -> tuple[Authenticator, list[str]]:
        """The enrolment right after the password: read the secret beside the QR code, confirm a code."""
        page = self.client.get("/app/login/enrol").get_data(as_text=True)
        phone = Authenticator(re.search(r'id="mfa-secret">([^<]+)<', page).group(1))
        r = self.post("/app/login/enrol", {"code": phone.code()})
        assert r.status_code == 200, text_of(r.get_data(as_text=True))[:400]
        codes = re.findall(r"<li><code>([^<]+)</code></li>", r.get_data(as_text=True))
        return phone, codes


def enrol_by_web(erp, username) -> tuple[Authenticator, list[str]]:
    b = Browser(erp)
    r = b.password(username)
    assert r.status_code == 303 and r.headers["Location"] == "/app/login/enrol"
    return b.enrol_first()


def audit_events(erp, username=None) -> list[str]:
    with erp.db.session(write=False) as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.entity == "mfa").order_by(AuditLog.id)).all()
        return [r.after["event"] for r in rows if username is None or r.after["username"] == username]


# ---- a required role without MFA ------------------------------------------------------------------

def test_a_required_role_without_mfa_is_sent_to_enrolment_and_reaches_nothing_else(mfa_erp):
    erp = mfa_erp
    b = Browser(erp)
    r = b.password("finance")
    assert r.status_code == 303 and r.headers["Location"] == "/app/login/enrol"
    for path in ("/app/", "/app/invoices", "/app/account", "/app/account/mfa", "/app/reports/trial-balance"):
        r = b.client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/app/login"), path
    r = b.post("/app/logout", {}, csrf_from="/app/login/enrol")  # no session to end: nothing happens
    page = b.client.get("/app/login/enrol")
    assert page.status_code == 302  # the logout cleared the challenge too
    # the API: no token, a 403 that says where to enrol
    r = api_login(erp.client, "finance")
    assert r.status_code == 403 and r.json["title"] == "Multi-factor enrolment required"
    assert "/app/login" in r.json["fix"] and "token" not in r.json
    # a role outside the policy logs in with the password as before
    assert api_login(erp.client, "sales").status_code == 200


def test_enrolment_page_shows_an_inline_svg_qr_code_the_csp_allows_and_the_secret_as_text(mfa_erp):
    b = Browser(mfa_erp)
    b.password("admin")
    r = b.client.get("/app/login/enrol")
    page = r.get_data(as_text=True)
    csp = r.headers["Content-Security-Policy"]
    assert "img-src 'self'" in csp and "data:" not in csp and "unsafe-inline" not in csp
    svg = re.search(r'<div id="mfa-qr"[^>]*>(<svg.*?</svg>)</div>', page, re.S).group(1)
    assert 'class="qr"' in svg and "<path" in svg and "style=" not in svg and "data:" not in page
    secret = re.search(r'id="mfa-secret">([^<]+)<', page).group(1).replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    # shown again, it is the same secret (the app scanned it already); stored encrypted
    again = b.client.get("/app/login/enrol").get_data(as_text=True)
    assert secret in again.replace(" ", "")
    with mfa_erp.db.session(write=False) as s:
        stored = s.execute(text("SELECT secret, confirmed_at FROM user_mfa")).one()
    assert stored[0].startswith("v2:") and secret not in stored[0] and stored[1] is None  # bound to its row


# ---- the second step --------------------------------------------------------------------------------

def test_web_login_with_password_then_code_and_the_session_is_not_authenticated_before(mfa_erp):
    erp = mfa_erp
    phone, codes = enrol_by_web(erp, "finance")
    assert len(codes) == 10 and len(set(codes)) == 10 and all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", c)
                                                                for c in codes)
    b = Browser(erp)
    r = b.password("finance")
    assert r.status_code == 303 and r.headers["Location"] == "/app/login/code"
    assert b.client.get("/app/invoices").status_code == 302  # not logged in yet
    r = b.post("/app/login/code", {"code": phone.wrong_code()})
    assert r.status_code == 401 and "wrong" in text_of(r.get_data(as_text=True))
    assert b.client.get("/app/invoices").status_code == 302
    r = b.post("/app/login/code", {"code": phone.code()})
    assert r.status_code == 303 and r.headers["Location"] == "/app/"
    assert b.client.get("/app/invoices").status_code == 200
    assert audit_events(erp, "finance") == ["enrolled"]


def test_api_login_with_password_then_code(mfa_erp):
    erp = mfa_erp
    phone, _codes = enrol_by_web(erp, "admin")
    challenge = challenge_of(erp.client, "admin")
    r = api_code(erp.client, challenge, phone.code())
    assert r.status_code == 200 and r.json["username"] == "admin"
    me = erp.client.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json['token']}"})
    assert me.status_code == 200 and me.json["role"] == "admin"
    # the challenge is used: it gives no second token, even with a fresh code
    assert api_code(erp.client, challenge, phone.code()).status_code == 401
    with erp.db.session(write=False) as s:
        login = s.scalars(select(AuditLog).where(AuditLog.action == "login").order_by(AuditLog.id.desc())).first()
    assert login.after["factor"] == "totp"


def test_a_wrong_code_is_refused_and_counts_toward_the_login_throttle(mfa_erp):
    erp = mfa_erp
    phone, _codes = enrol_by_web(erp, "finance")
    challenge = challenge_of(erp.client, "finance")
    good, wrong = phone.code(), phone.wrong_code()
    for _ in range(5):
        r = api_code(erp.client, challenge, wrong)
        assert r.status_code == 401 and r.json["field"] == "code"
    r = api_code(erp.client, challenge, good)  # the limit is reached: even the right code waits
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert api_login(erp.client, "finance").status_code == 429  # and so does the password
    with erp.db.session(write=False) as s:
        failed = s.scalars(select(AuditLog).where(AuditLog.action == "login_failed")).all()
    assert [f.after.get("factor") for f in failed] == ["code"] * 5


def test_a_code_cannot_be_replayed_within_its_window(mfa_erp):
    erp = mfa_erp
    phone, _codes = enrol_by_web(erp, "finance")
    code = phone.code()
    assert api_code(erp.client, challenge_of(erp.client, "finance"), code).status_code == 200
    r = api_code(erp.client, challenge_of(erp.client, "finance"), code)
    assert r.status_code == 401 and "already used" in r.json["detail"]
    # nor the code that confirmed the enrolment, nor an older step than the last accepted
    assert api_code(erp.client, challenge_of(erp.client, "finance"),
                    phone.totp.generate_otp(phone.last - 1)).status_code == 401
    assert api_code(erp.client, challenge_of(erp.client, "finance"), phone.code()).status_code == 200


def test_recovery_codes_work_once_and_regenerating_voids_the_old_ones(mfa_erp):
    erp = mfa_erp
    phone, codes = enrol_by_web(erp, "finance")
    r = api_code(erp.client, challenge_of(erp.client, "finance"), codes[3].upper().replace("-", " "))
    assert r.status_code == 200  # as typed from paper: case, spaces and dashes do not matter
    r = api_code(erp.client, challenge_of(erp.client, "finance"), codes[3])
    assert r.status_code == 401
    # regenerate from the account page (logged in with a code)
    b = Browser(erp)
    b.password("finance")
    assert b.post("/app/login/code", {"code": phone.code()}).status_code == 303
    page = b.client.get("/app/account/mfa").get_data(as_text=True)
    assert "Unused recovery codes: 9" in text_of(page)
    r = b.post("/app/account/mfa/recovery-codes", {}, csrf_from="/app/account/mfa")
    new = re.findall(r"<li><code>([^<]+)</code></li>", r.get_data(as_text=True))
    assert r.status_code == 200 and len(new) == 10 and not set(new) & set(codes)
    assert api_code(erp.client, challenge_of(erp.client, "finance"), codes[4]).status_code == 401
    assert api_code(erp.client, challenge_of(erp.client, "finance"), new[0]).status_code == 200
    assert audit_events(erp, "finance") == ["enrolled", "recovery_code_used", "recovery_codes_regenerated",
                                            "recovery_code_used"]
    with erp.db.session(write=False) as s:
        hashes = [h for (h,) in s.execute(text("SELECT code_hash FROM mfa_recovery_codes"))]
    assert all(h.startswith("$argon2id$") for h in hashes) and not any(c.replace("-", "") in h for h in hashes
                                                                       for c in new)


def test_mfa_reset_lets_the_user_log_in_with_the_password_alone_and_re_enrol(mfa_erp):
    erp = mfa_erp
    old_phone, old_codes = enrol_by_web(erp, "finance")
    with erp.db.session(actor="erpctl") as s:
        done = mfa_reset(s, "finance")
    assert done["username"] == "finance" and done["reset"] is True
    with erp.db.session(write=False) as s:
        assert s.execute(text("SELECT COUNT(*) FROM user_mfa")).scalar() == 0
        assert s.execute(text("SELECT COUNT(*) FROM mfa_recovery_codes")).scalar() == 0
    # the password alone: no code asked, straight to a new enrolment (finance requires MFA)
    b = Browser(erp)
    r = b.password("finance")
    assert r.headers["Location"] == "/app/login/enrol"
    phone, _codes = b.enrol_first()
    assert phone.totp.secret != old_phone.totp.secret
    assert b.client.get("/app/invoices").status_code == 200
    assert api_code(erp.client, challenge_of(erp.client, "finance"), old_codes[0]).status_code == 401
    assert audit_events(erp, "finance") == ["enrolled", "reset", "enrolled"]
    with erp.db.session(write=False) as s:
        reset = s.scalars(select(AuditLog).where(AuditLog.entity == "mfa")).all()[1]
    assert reset.actor == "erpctl" and reset.action == "delete"
    # a role outside the policy: after a reset, the password alone gives the token
    sales_phone = _enrol_from_account(erp, "sales")
    assert api_login(erp.client, "sales").status_code == 401
    with erp.db.session(actor="erpctl") as s:
        mfa_reset(s, "sales")
    assert api_login(erp.client, "sales").status_code == 200
    with erp.db.session(actor="erpctl") as s:
        assert mfa_reset(s, "sales")["reset"] is False  # nothing left to reset
    assert sales_phone


def _enrol_from_account(erp, username) -> Authenticator:
    """A user whose role does not require MFA sets it up from My account."""
    b = Browser(erp)
    assert b.password(username).headers["Location"] == "/app/"
    account = b.client.get("/app/account").get_data(as_text=True)
    assert 'href="/app/account/mfa"' in account
    assert "Off:" in text_of(b.client.get("/app/account/mfa").get_data(as_text=True))
    r = b.post("/app/account/mfa/start", {}, csrf_from="/app/account/mfa")
    assert r.status_code == 303
    page = b.client.get("/app/account/mfa").get_data(as_text=True)
    assert "<svg" in page
    phone = Authenticator(re.search(r'id="mfa-secret">([^<]+)<', page).group(1))
    wrong = b.post("/app/account/mfa/confirm", {"code": "12345"}, csrf_from="/app/account/mfa")
    assert wrong.status_code == 303  # back to the page with the message
    assert "wrong" in text_of(b.client.get("/app/account/mfa").get_data(as_text=True))
    r = b.post("/app/account/mfa/confirm", {"code": phone.code()}, csrf_from="/app/account/mfa")
    assert r.status_code == 200 and len(re.findall(r"<li><code>", r.get_data(as_text=True))) == 10
    assert "On:" in text_of(b.client.get("/app/account/mfa").get_data(as_text=True))
    return phone


def test_the_pages_are_in_chinese_too(mfa_erp):
    b = Browser(mfa_erp)
    b.client.get("/app/login?lang=zh_Hans")
    b.password("finance")
    page = text_of(b.client.get("/app/login/enrol").get_data(as_text=True))
    assert "设置多因素登录" in page and "密钥：" in page and "Scan" not in page
    r = b.post("/app/login/enrol", {"code": "12345"})
    assert r.status_code == 401 and "一次性验证码错误、已过期或已被使用。" in text_of(r.get_data(as_text=True))


# ---- who must, and the setting ----------------------------------------------------------------------

def test_service_users_of_the_operators_tools_never_need_a_second_factor(mfa_erp):
    erp = mfa_erp
    with erp.db.session(actor="erpctl") as s:
        auth.add_user(s, "probe", PASSWORD, "admin", service=True)
    r = api_login(erp.client, "probe")
    assert r.status_code == 200 and r.json["role"] == "admin"
    assert rules.required(frozenset({"admin"}), "admin", service=True) is False
    assert rules.required(frozenset({"admin"}), "admin", service=False) is True


def test_the_policy_setting():
    assert Settings("sqlite://", field_key=FIELD_KEY, mfa_roles="Admin, finance").mfa_roles == {"admin", "finance"}
    assert Settings("sqlite://", field_key=FIELD_KEY, mfa_roles="none").mfa_roles == frozenset()
    with pytest.raises(ValueError, match="unknown role.*overlord.*'none'"):
        Settings("sqlite://", field_key=FIELD_KEY, mfa_roles="admin,overlord")
    assert rules.parse_roles(None) == {"admin", "finance"}  # the default


# ---- PostgreSQL: the same code sent at once ---------------------------------------------------------

@pytest.mark.postgres
def test_the_same_code_sent_in_parallel_is_accepted_once_on_postgres(request, tmp_path, monkeypatch):
    monkeypatch.setenv("ERP_MFA_ROLES", POLICY)
    erp = Erp(fresh_database_url("postgres", request, tmp_path), "postgres")
    try:
        phone, _codes = enrol_by_web(erp, "finance")
        _admin_phone, codes = enrol_by_web(erp, "admin")
        code = phone.code()
        # five at once (under the throttle's five failures: each sees at most four of the others' failures)
        challenges = [challenge_of(erp.client, "finance") for _ in range(5)]
        results: list[int] = []
        start = threading.Barrier(len(challenges))

        def send(ch, what):
            client = erp.app.test_client()
            start.wait()
            results.append(api_code(client, ch, what).status_code)

        threads = [threading.Thread(target=send, args=(ch, code)) for ch in challenges]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 401, 401, 401, 401]
        results.clear()
        challenges = [challenge_of(erp.client, "admin") for _ in range(4)]
        start = threading.Barrier(len(challenges))
        threads = [threading.Thread(target=send, args=(ch, codes[0])) for ch in challenges]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 401, 401, 401]
    finally:
        erp.close()
