"""The ops console's pages in a real browser (Debian's Chromium through Playwright, the console app
served by waitress on loopback, with two drills' records): as an operator (who sees every form) and as
an auditor, in English and in Chinese, axe-core finds no violation of impact serious or critical at
desktop width and on a 390 px phone, where nothing is wider than the screen; the keyboard alone logs in.
A full-page screenshot of each page in each language is kept (tests/a11y.py says where)."""

from __future__ import annotations

import shutil

import pytest

from controlplane.console import users
from controlplane.console.app import create_app
from erp_core.serve import Server
from tests.a11y import DESKTOP, PHONE, PHONE_RULES, axe_script, overflow, screenshot, serious_violations
from tests.controlplane.drills.conftest import FAILED, FIXTURES as DRILL_FIXTURES
from tests.controlplane.test_console_browser import PAGES
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium

OPERATOR, AUDITOR = ("olga", "operator password 1"), ("audrey", "auditor password 1")
LOCALES = {"en": "en-US", "zh": "zh-CN"}
HTML_LANG = {"en": "en", "zh": "zh-CN"}


@pytest.fixture
def console(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(DRILL_FIXTURES, data / "drills")
    users.add(data, OPERATOR[0], "operator", OPERATOR[1])
    users.add(data, AUDITOR[0], "auditor", AUDITOR[1])
    server = Server(create_app({}, data_dir=data, database_url=f"sqlite:///{data / 'erp.sqlite3'}"), port=0).start()
    try:
        yield server.url
    finally:
        server.stop()


def _check(page, script, lang: str, name: str, problems: list) -> None:
    assert page.get_attribute("html", "lang") == HTML_LANG[lang], (lang, name)
    screenshot(page, "console", lang, name)
    for label, size, rules in (("desktop", DESKTOP, None), ("390 px", PHONE, PHONE_RULES)):
        page.set_viewport_size(size)
        problems += [f"{lang} {name} ({label}): {v}" for v in serious_violations(page, script, rules)]
    if wide := overflow(page):
        problems.append(f"{lang} {name} (390 px): {wide}")
    page.set_viewport_size(DESKTOP)


def _walk(browser, url, script, who, lang, problems) -> None:
    page = browser.new_context(locale=LOCALES[lang], viewport=DESKTOP).new_page()
    page.set_default_timeout(20_000)
    page.goto(url + "/console/login")
    if who is OPERATOR:
        _check(page, script, lang, "login", problems)
    page.focus("input[name=name]")  # the keyboard alone: type, Tab, type, Enter
    page.keyboard.type(who[0])
    page.keyboard.press("Tab")
    page.keyboard.type(who[1])
    page.keyboard.press("Enter")
    page.wait_for_url(url + "/console/")
    names = PAGES if who is OPERATOR else {"status": PAGES["status"]}
    for name, (path, _en, _zh) in names.items():
        assert page.goto(url + path).status == 200, path
        _check(page, script, lang, name if who is OPERATOR else f"{name}-auditor", problems)
    if who is OPERATOR:
        assert page.goto(url + f"/console/drills/{FAILED}/report?lang={lang}").status == 200
        _check(page, script, lang, "drill-report", problems)
    page.context.close()


def test_every_console_page_passes_axe_in_both_languages_on_desktop_and_phone(console):
    _expect, sync_playwright = playwright_and_chromium()
    script = axe_script()
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for lang in LOCALES:
                for who in (OPERATOR, AUDITOR):
                    _walk(browser, console, script, who, lang, problems)
        finally:
            browser.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
