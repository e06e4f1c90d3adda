"""Real Chromium: an administrator resets a user's password on the Users page; the user logs in with the
temporary password and cannot reach any page before choosing a new one; the policy refuses a common one."""

from __future__ import annotations

import re

from erp_core.serve import Server
from tests.conftest import PASSWORD, Erp, fresh_database_url
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium

NEW = "plum tractor velvet ocean"


def _login(page, url, username, password):
    page.goto(url + "/app/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Log in')")


def test_admin_resets_a_password_and_the_user_must_change_it_first(request, tmp_path):
    expect, sync_playwright = playwright_and_chromium()
    erp = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    server = Server(erp.app, port=0).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                admin = browser.new_context().new_page()
                admin.set_default_timeout(20_000)
                _login(admin, server.url, "admin", PASSWORD)
                expect(admin.locator("h1")).to_have_text("Dashboard")
                admin.click("header a:has-text('Users')")
                admin.click("#reset-warehouse")
                expect(admin.locator("h1")).to_have_text("Password reset")
                temporary = admin.locator("#temporary-password").inner_text().strip()
                assert len(temporary) >= 12

                user = browser.new_context().new_page()
                user.set_default_timeout(20_000)
                _login(user, server.url, "warehouse", PASSWORD)  # the old password no longer works
                expect(user.locator(".flash.error").first).to_contain_text("wrong")
                _login(user, server.url, "warehouse", temporary)
                expect(user).to_have_url(re.compile(r"/app/account/password$"))
                expect(user.locator("#forced-change")).to_be_visible()
                for path in ("/app/", "/app/stock", "/app/account"):  # no page opens before the change
                    user.goto(server.url + path)
                    expect(user).to_have_url(re.compile(r"/app/account/password$"))
                user.fill("#current_password", temporary)
                user.fill("#new_password", "password1234")
                user.fill("#new_password_again", "password1234")
                user.click("button:has-text('Change password')")
                expect(user.locator(".flash.error")).to_contain_text("common passwords")
                user.fill("#current_password", temporary)
                user.fill("#new_password", NEW)
                user.fill("#new_password_again", NEW)
                user.click("button:has-text('Change password')")
                expect(user.locator(".flash.ok")).to_contain_text("Password changed")
                user.goto(server.url + "/app/stock")
                expect(user).to_have_url(re.compile(r"/app/stock$"))
                user.goto(server.url + "/app/account/sessions")
                expect(user.locator("#sessions tbody tr")).to_have_count(1)
                user.click("#logout-everywhere button")
                expect(user).to_have_url(re.compile(r"/app/login"))
            finally:
                browser.close()
    finally:
        server.stop()
        erp.close()
    assert erp.client.post("/api/v1/auth/login", json={"username": "warehouse", "password": NEW}).status_code == 200
