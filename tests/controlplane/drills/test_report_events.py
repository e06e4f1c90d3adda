"""A Chinese drill report leaves no English sentence in its timeline or its check names: every sentence the
engine writes is translated (names of commands, runbooks, scenarios and status items kept as code). The
sentences of every shipped scenario's real run are checked too, in test_drill_run.py."""

from __future__ import annotations

import html
import json
import re

from controlplane import layout
from controlplane.drills import report
from controlplane.drills.report_events import ACTIONS, CHECKS, EVENTS, FINDINGS, check_html, event_html, finding_html
from controlplane.drills.report_i18n import words
from tests.controlplane.drills.conftest import PASSED

# One sentence of each kind the engine writes (engine.py, recovery.py, inject.py's actions, state.py).
SENTENCES = [
    "drill started",
    "sandbox serves release 1.0.0; the upgrade to 1.1.0 is rehearsed",
    "sandbox seeded from scratch (--fresh, scale 0)",
    "sandbox restored from backup 1a2b3c4d (verified first)",
    "sandbox serving",
    "field key escrowed (passphrase copy beside the sandbox's data directory)",
    "backup taken in the sandbox (the scheduled backup)",
    "steady state holds",
    "steady state does NOT hold",
    "fault injected: upgrade-killed",
    "detected after 0.42 s: erpctl field-key check exited 14",
    "detected after 1.5 s: probe db_integrity failing",
    "not detected in time",
    "alert ErpDown pending 0.93 s after the fault",
    "alert ErpDown firing 2.5 s after the fault (`for` 2 s, shortened)",
    "alert ErpDown firing 61.2 s after the fault (`for` 60 s, as shipped)",
    "detection judged by probe: 1.017 s",
    "detection judged by alert-pending: 0.93 s",
    "detection judged by alert-firing: None s",
    "Prometheus serving with the shipped rules, scraping the sandbox; the alert ErpDown detects, its `for` "
    "shortened to 0 s (shipped: 60 s)",
    "Prometheus serving with the shipped rules, scraping the sandbox; the alert ErpDown detects, its `for` "
    "as shipped (60 s)",
    "Prometheus is not installed (no prometheus on PATH): detection by the probes only (the alert ErpDown is "
    "not evaluated)",
    "--detect probes was given: detection by the probes only (the alert ErpDown is not evaluated)",
    "the restore discards 12 write(s) made since the backup (erpctl backup restore --dry-run)",
    "runbook UpgradeFailed started (--yes)",
    "runbook FieldKeyLost ended not-recovered (exit 63)",
    "manual step 5 (Recover: values written with the wrong key): nothing to do in the sandbox, marked done",
    "manual step 4 (Recover: bring the store back): the backup store is reachable again (its directory back)",
    "RTO 12.657 s, 0 acknowledged write(s) lost of 600",
    "sandbox removed",
    "the live drill's scratch directory removed (nothing of the live installation is removed)",
    "live drill approved by Zhang Wei and Li Na in a window containing now",
    "live installation serving; drill user drill-20261205t071528z created (its writes stay, marked as drill data)",
    "drill user drill-20261205t071528z deactivated; the live installation serves",
    "drill user drill-20261205t071528z NOT deactivated; the live installation does NOT serve",
    "drill user drill-20261205t071528z deactivated; the live installation does NOT serve",
    "sandbox kept at /srv/erpctl-data/drills/x/sandbox",
    "drill aborted: its process was gone (killed); cleaned up by the next drill command",
    "drill aborted: SIGTERM",
    *ACTIONS,
]


# One finding of each kind the engine records (engine.py, detection.py, state.py).
FINDING_SENTENCES = [
    "The alert ErpDown went pending 0.93 s after the fault and cleared before its `for` (60 s) ran out: the service "
    "came back before anyone was paged.",
    "The alert ErpDown never went pending and the sandbox served again before its `for` (60 s) ran out: the service "
    "came back before anyone was paged.",
    "The alert ErpDown did not fire within 120 s of the fault (`for` 2 s); it went pending.",
    "The alert ErpDown did not fire within 120 s of the fault (`for` 2 s); it never went pending.",
    "The probes did not detect the fault within 60 s (expected: erp down, erpctl field-key check failing).",
    "The runbook ErpDown did not recover the sandbox: it ended failed (exit 63); see runbook.log.",
    "No business write was acknowledged within 60 s after the recovery ended.",
    "3 acknowledged write(s) lost (order, payment), acknowledged between 2026-12-05T07:00:00Z and "
    "2026-12-05T07:00:03Z; workload.jsonl lists every acknowledged write.",
    "Objective rto missed: measured 130.2, target 120.",
    "Checks failed: invariants (after), readyz (after).",
    "The clean-up left port 4000, directory /srv/x.",
    "The drill was aborted (SIGTERM) before it ended.",
    "The drill could not go on: OperationalError: no such table accounts",
    "The drill user drill-x is not shown deactivated (active: True).",
    "The live installation does not answer /readyz after the drill.",
    "The drill did not finish: its process was gone (killed); cleaned up by the next drill command.",
    "The drill did not finish: the machine went down.",
]


def english_left(cell_html: str) -> list[str]:
    """Runs of two or more English words in a cell, once what is marked as code (names) is taken out."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<code>.*?</code>", " ", cell_html, flags=re.S)))
    return re.findall(r"[A-Za-z]{2,}(?:[\s,;:()'/-]+[A-Za-z]{2,})+", text)


def report_cells(page: str, lang: str = "zh") -> tuple[list[str], list[str]]:
    """(the timeline's event cells, the data checks' name cells) of an HTML drill report."""
    t = words(lang)

    def column(title: str, index: int) -> list[str]:
        table = re.search(rf"<h2>{re.escape(html.escape(title))}</h2>(?:<div[^>]*>)?<table>(.*?)</table>", page, re.S)
        assert table, f"no table {title!r} in the report"
        rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)[1:]
        return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[index] for row in rows]

    return column(t["timeline"], 2), column(t["checks"], 0)


def test_every_sentence_the_engine_writes_is_translated():
    used = set()
    for sentence in SENTENCES:
        zh = event_html(sentence, "zh", html.escape)
        assert zh != html.escape(sentence), f"not translated: {sentence!r}"
        assert english_left(zh) == [], (sentence, zh)
        assert event_html(sentence, "en", html.escape) == html.escape(sentence)
        used |= {p for p, _, _ in EVENTS if re.fullmatch(p, sentence)}
    assert used == {p for p, _, _ in EVENTS}, "a pattern no sample sentence exercises"
    for name in CHECKS:
        zh = check_html(name, "zh", html.escape)
        assert english_left(zh) == [] and f"<code>{name}</code>" in zh, zh
    assert english_left("检测到：<code>erp down</code>") == [] and english_left("sandbox serving") != []


def test_a_chinese_report_has_no_english_sentence_in_its_timeline_or_check_names(drills):
    """A drill's record holding every sentence the engine writes, and every check, reported in Chinese."""
    path = layout.path(drills.data_dir, "drill_record", id=PASSED)
    rec = json.loads(path.read_text())
    at = rec["timeline"][0]["at"]
    rec["timeline"] = [{"at": at, "phase": "recover", "event": s, "detail": {}} for s in SENTENCES]
    rec["checks"] = [{"name": n, "phase": "after", "ok": True, "detail": "ok"} for n in CHECKS]
    path.write_text(json.dumps(rec))
    page = open(report.write(drills, PASSED, "html", "zh")["path"], encoding="utf-8").read()
    events, checks = report_cells(page)
    assert len(events) == len(SENTENCES) and len(checks) == len(CHECKS)
    left = [(cell, english_left(cell)) for cell in events + checks if english_left(cell)]
    assert left == [], left
    en_events, en_checks = report_cells(open(report.write(drills, PASSED, "html", "en")["path"],
                                             encoding="utf-8").read(), "en")
    assert en_events == [html.escape(s) for s in SENTENCES] and en_checks == list(CHECKS)


def test_every_finding_the_engine_records_is_translated_and_a_persons_is_shown_as_written():
    used = set()
    for sentence in FINDING_SENTENCES:
        zh = finding_html(sentence, "zh", html.escape)
        assert zh != html.escape(sentence) and english_left(zh) == [], (sentence, zh)
        assert finding_html(sentence, "en", html.escape) == html.escape(sentence)
        used |= {p for p, _, _ in FINDINGS if re.fullmatch(p, sentence)}
    assert used == {p for p, _, _ in FINDINGS}, "a pattern no sample finding exercises"
    mine = "备份窗口与月结冲突 <b>"  # a finding a person wrote: as written, escaped
    assert finding_html(mine, "zh", html.escape) == html.escape(mine)
