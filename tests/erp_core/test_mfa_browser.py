"""Multi-factor login in a real browser (Debian's Chromium through Playwright) against the ERP served by
waitress: a finance user (a role that must use MFA) is led to enrolment right after the password,
scans the QR code (the test reads the secret shown beside it as text), keeps the recovery codes, logs
out, logs in with password and code; a recovery code logs in once and is refused the second time; the
API logs in with the password, then the code."""

from __future__ import annotations

import re

import requests

from erp_core.serve import Server
from tests.conftest import PASSWORD, Erp, fresh_database_url
from tests.erp_core.test_mfa import Authenticator
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium


def log_in(page, expect, username: str, password: str = PASSWORD) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Log in')")


def log_out(page, expect) -> None:
    page.click("button:has-text('Log out')")
    expect(page.locator(".flash.ok")).to_contain_text("You are logged out.")


def test_finance_user_enrols_by_qr_code_then_logs_in_with_a_code_and_a_recovery_code_once(
        request, tmp_path, monkeypatch):
    expect, sync_playwright = playwright_and_chromium()
    monkeypatch.setenv("ERP_MFA_ROLES", "admin,finance")
    erp = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    server = None
    try:
        server = Server(erp.app, port=0).start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(20_000)
                csp_violations = []
                page.on("console", lambda m: csp_violations.append(m.text)
                        if "Content Security Policy" in m.text else None)
                page.goto(server.url + "/app/login")
                log_in(page, expect, "finance")

                # enrolment, and nothing else until it is done
                expect(page).to_have_url(re.compile(r"/app/login/enrol$"))
                expect(page.locator("h1")).to_have_text("Set up multi-factor login")
                qr = page.locator("#mfa-qr svg")
                expect(qr).to_be_visible()
                box = qr.bounding_box()
                assert box["width"] >= 150 and box["height"] >= 150  # drawn, at a size a phone can scan
                assert page.locator("#mfa-qr svg path").count() >= 1
                secret = page.locator("#mfa-secret").inner_text()
                phone = Authenticator(secret)
                page.goto(server.url + "/app/invoices")
                expect(page).to_have_url(re.compile(r"/app/login"))
                page.goto(server.url + "/app/login/enrol")
                page.fill("#mfa-code", phone.code())
                page.click("button:has-text('Confirm')")
                expect(page.locator("h1")).to_have_text("Multi-factor login is set up")
                codes = page.locator("#recovery-codes code").all_inner_texts()
                assert len(codes) == 10
                page.click("#mfa-continue")
                expect(page.locator("h1")).to_have_text("Dashboard")
                log_out(page, expect)

                # password, then the code
                log_in(page, expect, "finance")
                expect(page).to_have_url(re.compile(r"/app/login/code$"))
                page.fill("#mfa-code", phone.code())
                page.click("button:has-text('Verify')")
                expect(page.locator("h1")).to_have_text("Dashboard")
                page.click("#my-account")
                page.click("#account-mfa")
                expect(page.locator("#mfa-status")).to_contain_text("On:")
                log_out(page, expect)

                # a recovery code logs in once
                log_in(page, expect, "finance")
                page.fill("#mfa-code", codes[0])
                page.click("button:has-text('Verify')")
                expect(page.locator("h1")).to_have_text("Dashboard")
                log_out(page, expect)
                log_in(page, expect, "finance")
                page.fill("#mfa-code", codes[0])
                page.click("button:has-text('Verify')")
                expect(page.locator(".flash.error")).to_contain_text("already used")
                expect(page).to_have_url(re.compile(r"/app/login/code$"))
                page.goto(server.url + "/app/invoices")
                expect(page).to_have_url(re.compile(r"/app/login"))
                assert not csp_violations, csp_violations
            finally:
                browser.close()

        # the API: the password, then the code with the challenge
        r = requests.post(server.url + "/api/v1/auth/login", json={"username": "finance", "password": PASSWORD},
                          timeout=30)
        assert r.status_code == 401 and r.json()["title"] == "Second factor required"
        r = requests.post(server.url + "/api/v1/auth/login/code",
                          json={"challenge": r.json()["challenge"], "code": phone.code()}, timeout=30)
        assert r.status_code == 200, r.text
        me = requests.get(server.url + "/api/v1/me", headers={"Authorization": f"Bearer {r.json()['token']}"},
                          timeout=30)
        assert me.json()["username"] == "finance"
    finally:
        if server is not None:
            server.stop()
        erp.close()
