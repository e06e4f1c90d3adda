"""What the browser tests check on every page they walk: axe-core's rules (the engine from the PyPI
package axe-playwright-python, which ships axe.min.js; installed by the `[test]` extra), the width of
the page on a phone (390 px: nothing wider than the screen, bar inside a scrollable table container),
and a full-page screenshot per page and language kept as a test artifact.

Screenshots go to test-artifacts/screenshots/<part>/<lang>/<page>.png under the repository, or under
the directory named by ERPCTL_TEST_ARTIFACTS."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import need

ARTIFACTS = Path(os.environ.get("ERPCTL_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "test-artifacts") / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
FAILING_IMPACTS = ("serious", "critical")
# what axe checks: the WCAG 2.x A and AA rules and axe's best practices
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa",
                                                      "best-practice"]},
               "resultTypes": ["violations"]}
# on the phone, the rules whose outcome depends on the width (the others give the same answer as on the
# desktop, where they all run): touch targets, tables scrolling in their container, the viewport
PHONE_RULES = ["target-size", "scrollable-region-focusable", "meta-viewport", "meta-viewport-large"]
# elements wider than the screen that are not inside a container scrolling on its own
_OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = el => { for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; };
  const wide = [...document.body.querySelectorAll('*')].filter(
      el => el.getBoundingClientRect().right > width + 1 && !scrolls(el));
  return {scroll: document.documentElement.scrollWidth, width,
          offenders: wide.slice(0, 5).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                                                + (el.className ? '.' + String(el.className).split(' ')[0] : ''))};
}"""


def axe_script() -> str:
    try:
        from axe_playwright_python.base import AXE_SCRIPT
    except ImportError:
        need("the Python package 'axe-playwright-python' is not installed (pip install -e '.[test]')")
    return AXE_SCRIPT


def serious_violations(page, script: str, rules: list[str] | None = None) -> list[str]:
    """axe-core's violations of impact serious or critical on the page as it is, one line each (of the
    rules named, or of all the WCAG A/AA and best-practice rules)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(script)
    options = AXE_OPTIONS if rules is None else {"runOnly": {"type": "rule", "values": rules},
                                                 "resultTypes": ["violations"]}
    result = page.evaluate("options => axe.run(document, options)", options)
    return [f"{v['id']} ({v['impact']}): {v['help']} -- "
            + "; ".join(" ".join(n["target"]) for n in v["nodes"][:4])
            for v in result["violations"] if v["impact"] in FAILING_IMPACTS]


def overflow(page) -> str | None:
    """None when nothing is wider than the viewport, else what sticks out."""
    found = page.evaluate(_OVERFLOW_JS)
    if found["scroll"] <= found["width"]:
        return None
    return f"document {found['scroll']} px wide on a {found['width']} px screen: {', '.join(found['offenders'])}"


def screenshot(page, part: str, lang: str, name: str) -> Path:
    path = ARTIFACTS / part / lang / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def focus_ring(page) -> dict:
    """The focused element and whether its focus is drawn (an outline or a box shadow)."""
    return page.evaluate("""() => { const el = document.activeElement; const s = getComputedStyle(el);
      return {id: el.id, tag: el.tagName.toLowerCase(), name: el.getAttribute('name'),
              visible: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none'}; }""")
