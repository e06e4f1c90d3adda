"""The ops console in a real browser (Debian's Chromium through Playwright) against `erpctl up` on
loopback (the ERP of release 1.0 and the ops console), on an installation with release 1.1 installed
beside it (the upgrade tests' releases) and two drills:

- an operator, in English, starts the upgrade from the console with the CLI's confirmation (typed
  'contract' for --confirm-contract), follows its progress on the page that refreshes itself until
  it says done, finds it in the history, and the ERP serves 1.1; then reads every page in Chinese;
- an auditor, in Chinese, reads a drill report and the evidence log's verification, sees no action
  and gets 403 on a forged POST; then reads every page in English.

Screenshots of every page in both languages go to test-artifacts/console/ (printed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from controlplane import release
from controlplane.backup.repository import open_repository
from controlplane.config import Target
from controlplane.console import users
from tests.conftest import RELEASE_OLD
from tests.controlplane.cli_helpers import LineProcess, erpctl_path, free_ports
from tests.controlplane.cli_helpers import env as cli_env
from tests.controlplane.drills.conftest import FAILED, FIXTURES as DRILL_FIXTURES
from tests.controlplane.release_helpers import DB_1_0, FIXTURE_KEY
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium

import erp_core

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
PASSPHRASE = "console test passphrase"
OPERATOR, AUDITOR = ("olga", "operator password 1"), ("audrey", "auditor password 1")
# page -> (path, heading in English, heading in Chinese)
PAGES = {
    "status": ("/console/", "Status", "状态"),
    "backups": ("/console/backups", "Backups", "备份"),
    "upgrade": ("/console/upgrade", "Upgrade", "升级"),
    "runbook-runs": ("/console/runbook-runs", "Runbook runs", "处置手册执行"),
    "drills": ("/console/drills", "Drills", "演练"),
    "evidence": ("/console/evidence", "Evidence log", "证据日志"),
    "runbook": ("/console/runbooks/ErpDown", "Runbook", "处置手册"),
}
UPGRADE_SECONDS = 300


@pytest.fixture
def installation(tmp_path, release_store):
    """Release 1.0 current on its SQLite database, 1.1 installed, a backup repository, two drills."""
    data = tmp_path / "data"
    (data / "releases").mkdir(parents=True)
    for version in (RELEASE_OLD, erp_core.__version__):
        os.symlink(release_store / version, data / "releases" / version)
    shutil.copy(DB_1_0, data / "erp.sqlite3")
    target = Target(data, f"sqlite:///{data / 'erp.sqlite3'}")
    release.set_current(target, RELEASE_OLD, check_schema=False)
    open_repository(f"file://{data / 'backups'}", passphrase=PASSPHRASE, create=True, data_dir=data,
                    kdf={"memory_cost": 8192})
    shutil.copytree(DRILL_FIXTURES, data / "drills")
    users.add(data, OPERATOR[0], "operator", OPERATOR[1])
    users.add(data, AUDITOR[0], "auditor", AUDITOR[1])
    return target


def _version(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
            return json.loads(r.read()).get("version")
    except (OSError, ValueError):
        return None


class Up:
    """`erpctl up` on the installation: release 1.0's ERP and the ops console."""

    def __init__(self, target, log: Path):
        erp_port, ops_port = free_ports(2)
        self.erp, self.ops = f"http://127.0.0.1:{erp_port}", f"http://127.0.0.1:{ops_port}"
        self.proc = LineProcess([erpctl_path(), "--json", "up", "--data-dir", target.data_dir, "--database-url",
                                 target.database_url, "--erp-port", erp_port, "--ops-port", ops_port], log,
                                env=cli_env(ERP_FIELD_KEY=FIXTURE_KEY, ERPCTL_BACKUP_PASSPHRASE=PASSPHRASE))

    def wait(self, url: str, version: str | None, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.proc.poll() is None, self.proc.log[-3000:]
            if (found := _version(url)) is not None and version in (None, found):
                return
            time.sleep(0.3)
        raise AssertionError(f"{url} did not serve {version}:\n{self.proc.log[-3000:]}")

    def stop(self) -> None:
        self.proc.proc.terminate()
        try:
            self.proc.proc.wait(timeout=30)
        except Exception:
            self.proc.proc.kill()
            raise


def _login(page, url, who, expect, heading):
    page.goto(url + "/console/login")
    page.get_by_label(re.compile("Account name|账户名")).fill(who[0])
    page.get_by_label(re.compile("Password|密码")).fill(who[1])
    page.keyboard.press("Enter")  # the keyboard alone logs in
    expect(page.locator("h1")).to_contain_text(heading)


def _tour(page, url, lang, expect, who):
    for name, (path, english, chinese) in PAGES.items():
        page.goto(url + path)
        expect(page.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-CN")
        expect(page.locator("h1")).to_contain_text(english if lang == "en" else chinese)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}.png"), full_page=True)
    print(f"screenshots ({who}, {lang}): {ARTIFACTS}")


def _switch(page, url, label, expect, lang_attr):
    page.goto(url + "/console/")
    page.click(f"button.lang-switch:has-text('{label}')")
    expect(page.locator("html")).to_have_attribute("lang", lang_attr)


def test_operator_follows_an_upgrade_and_auditor_reads_a_drill_report_in_chromium(installation, tmp_path):
    expect, sync_playwright = playwright_and_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    up = Up(installation, tmp_path / "up.log")
    try:
        up.wait(up.erp, RELEASE_OLD)
        up.wait(up.ops, None)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                _operator(browser, up.ops, expect)
                up.wait(up.erp, erp_core.__version__, timeout=60)  # the upgraded ERP serves
                _auditor(browser, up.ops, expect)
            finally:
                browser.close()
    finally:
        up.stop()
    shots = {p.name for p in ARTIFACTS.glob("*.png")}
    wanted = {f"{name}-{lang}.png" for name in [*PAGES, "login", "drill-report", "upgrade-done", "job"]
              for lang in ("en", "zh")}
    assert wanted <= shots, sorted(wanted - shots)


def _operator(browser, url, expect):
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(url + "/console/login")
    expect(page.locator("h1")).to_have_text("Log in to the ops console")
    page.screenshot(path=str(ARTIFACTS / "login-en.png"), full_page=True)
    _login(page, url, OPERATOR, expect, "Status")
    page.goto(url + "/console/upgrade")
    expect(page.locator("#plan")).to_contain_text(f"{RELEASE_OLD} → {erp_core.__version__}")
    expect(page.locator("#upgrade-status")).to_have_text("none")
    page.select_option("#step", "apply")
    page.check("#contract")
    page.fill("#confirm", "apply")  # the step's name does not confirm the point of no return
    page.click("#upgrade-actions button[type=submit]")
    expect(page.locator(".flash.error")).to_have_text("Type 'contract' to confirm the point of no return.")
    page.check("#contract")
    page.fill("#confirm", "contract")
    page.click("#upgrade-actions button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("erpctl upgrade apply --confirm-contract")
    expect(page.locator("#refreshing")).to_be_visible()  # it follows the upgrade by itself
    expect(page.locator("#upgrade-status")).to_have_text("done", timeout=UPGRADE_SECONDS * 1000)
    expect(page.locator("#refreshing")).to_have_count(0)
    expect(page.locator("#history")).to_contain_text("done")
    expect(page.locator("#stages")).to_contain_text("contract")
    page.screenshot(path=str(ARTIFACTS / "upgrade-done-en.png"), full_page=True)
    page.goto(url + "/console/")
    page.locator("table.jobs a").first.click()
    expect(page.locator("#exit-code")).to_have_text("0")
    page.screenshot(path=str(ARTIFACTS / "job-en.png"), full_page=True)
    page.goto(url + "/console/backups")  # the upgrade's own backup, with each level verified and timed
    expect(page.locator("table.levels").first).to_contain_text("L1")
    _tour(page, url, "en", expect, "operator")
    _switch(page, url, "简体中文", expect, "zh-CN")
    page.goto(url + "/console/upgrade")
    expect(page.locator("#upgrade-status")).to_have_text("已完成")
    page.screenshot(path=str(ARTIFACTS / "upgrade-done-zh.png"), full_page=True)
    page.goto(url + "/console/")
    page.locator("table.jobs a").first.click()
    page.screenshot(path=str(ARTIFACTS / "job-zh.png"), full_page=True)
    _tour(page, url, "zh", expect, "operator")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    for path in [p for p, _en, _zh in PAGES.values()]:
        page.goto(url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    page.goto(url + "/console/upgrade")
    page.screenshot(path=str(ARTIFACTS / "phone-upgrade-zh.png"), full_page=True)
    page.close()


def _auditor(browser, url, expect):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/console/login")
    expect(page.locator("h1")).to_have_text("登录运维控制台")
    page.screenshot(path=str(ARTIFACTS / "login-zh.png"), full_page=True)
    _login(page, url, AUDITOR, expect, "状态")
    page.goto(url + "/console/drills")
    expect(page.locator(f"tr[data-drill='{FAILED}']")).to_be_visible()
    page.click(f"tr[data-drill='{FAILED}'] a[lang=zh-CN]")
    expect(page.locator("h1")).to_have_text("应急演练报告")
    expect(page.locator("#verdict")).to_have_text("未通过")
    page.screenshot(path=str(ARTIFACTS / "drill-report-zh.png"), full_page=True)
    page.goto(url + "/console/evidence")
    expect(page.locator("#evidence-result")).to_have_text("完整")
    expect(page.locator("#records")).to_contain_text("upgrade")  # the operator's upgrade is in the log
    page.fill("#kind", "console.action")
    page.keyboard.press("Enter")
    expect(page.locator("#records tbody tr")).to_have_count(1)
    expect(page.locator("#records")).to_contain_text(OPERATOR[0])
    for path in ("/console/", "/console/backups", "/console/upgrade", "/console/drills"):
        page.goto(url + path)
        expect(page.locator("form[action*='/console/actions/']")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    for action, form in (("upgrade", {"step": "rollback", "confirm": "rollback"}),
                         ("drill", {"scenario": "erp-killed"}),
                         ("backup", {}), ("verify", {"backup": "latest", "level": "1"})):
        r = page.request.post(url + f"/console/actions/{action}", form={"csrf": csrf, **form}, max_redirects=0)
        assert r.status == 403, (action, r.status)
    _tour(page, url, "zh", expect, "auditor")
    _switch(page, url, "English", expect, "en")
    page.goto(url + "/console/drills")
    page.click(f"tr[data-drill='{FAILED}'] a[lang=en]")
    expect(page.locator("h1")).to_have_text("Emergency drill report")
    page.screenshot(path=str(ARTIFACTS / "drill-report-en.png"), full_page=True)
    _tour(page, url, "en", expect, "auditor")
    context.close()
