"""An auditor opens the HTML drill report offline in a real browser (headless Chromium through Playwright):
it shows the verdict, the figures against their targets, the findings, in English and in Chinese, and
loads nothing but itself. A full-page screenshot of each language is kept as a test artifact in
test-artifacts/drill-reports/ (printed)."""

from __future__ import annotations

import os
from pathlib import Path

from controlplane.drills import report
from controlplane.drills.review import add_finding
from tests.controlplane.cli_helpers import need
from tests.controlplane.drills.conftest import FAILED

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "drill-reports"
EXPECTED = {
    "en": {"h1": "Emergency drill report", "verdict": "FAILED", "rto": "FAIL", "detection": "PASS",
           "rows": ["Recovery time objective (RTO)", "300 s", "not measured", "Detection time", "12.4 s"],
           "finding": "Remediation items"},
    "zh": {"h1": "应急演练报告", "verdict": "未通过", "rto": "未达标", "detection": "达标",
           "rows": ["恢复时间目标 (RTO)", "300 秒", "未测得", "故障发现时间", "12.4 秒"], "finding": "整改事项"},
}


def test_the_html_report_in_chromium_in_both_languages(drills):
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        need("the Python package 'playwright' is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        need(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    add_finding(drills, FAILED, "<script>document.title='owned'</script>", "low")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for lang, want in EXPECTED.items():
                path = Path(report.write(drills, FAILED, "html", lang)["path"])
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                page.goto(path.as_uri())
                expect(page.locator("h1")).to_have_text(want["h1"])
                expect(page.locator("#verdict")).to_have_text(want["verdict"])
                expect(page.locator("[data-objective=rto]")).to_have_text(want["rto"])
                expect(page.locator("[data-objective=detection]")).to_have_text(want["detection"])
                body = page.inner_text("body")
                for text in want["rows"] + [want["finding"], "<script>document.title='owned'</script>",
                                            "20261202T031000Z-database-corrupted"]:
                    assert text in body, (lang, text)
                assert "owned" not in page.title()  # the finding's script is text, never run
                assert requests == [path.as_uri()], requests  # nothing loaded but the page itself
                shot = ARTIFACTS / f"{FAILED}-{lang}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 20_000
                print(f"screenshot ({lang}): {shot}")
                page.emulate_media(media="print")  # the print layout keeps every section
                assert page.inner_text("body").count("\n") > 40
                page.close()
        finally:
            browser.close()
