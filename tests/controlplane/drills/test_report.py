"""erpctl drill report: what an auditor reads in the HTML, JSON and PDF reports of a passed and a failed
drill, in English and Chinese; the hashes; the evidence record of each report written."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from controlplane import layout
from controlplane.drills import report
from controlplane.drills import review
from controlplane.drills.review import add_finding
from controlplane.errors import NoPdfRenderer
from controlplane.evidence import EvidenceLog
from tests.controlplane.cli_helpers import erpctl, need, ok
from tests.controlplane.drills.conftest import FAILED, PASSED


def html_of(inst, drill, lang):
    written = report.write(inst, drill, "html", lang)
    return written, open(written["path"], encoding="utf-8").read()


def text_of(page: str) -> str:
    """The page's visible text, tags removed, whitespace collapsed."""
    body = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", body).replace("&#x27;", "'").split())


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_passed_drill_in_english(drills):
    written, page = html_of(drills, PASSED, "en")
    text = text_of(page)
    assert "Emergency drill report" in text and "Outcome: PASSED" in text
    for row in ("Detection time 60 s 8.2 s PASS", "Recovery time objective (RTO) 120 s 31.5 s PASS",
                "acknowledged writes lost 0 writes 0 writes PASS"):
        assert row in text, row
    assert "declared 19.9 s before the fault" in text
    assert "erpctl 1.1.0, release 1.1.0, schema_revision 0007" in text and "Records retained until 2029-11-30" in text
    assert "Not signed off yet." in text
    record = layout.path(drills.data_dir, "drill_record", id=PASSED)
    assert sha256(record) in text  # the record's hash, and each artifact's, recorded and checked now
    assert text.count("matches") == 2
    # the report is in the evidence log with its own sha256
    last = EvidenceLog(drills.data_dir).records()[-1]
    assert last["kind"] == "drill.report"
    assert last["data"]["file"]["sha256"] == sha256(written["path"]) and last["data"]["record_sha256"] == sha256(record)
    assert written["path"].endswith(f"drills/{PASSED}/report-en.html")


def test_failed_drill_in_chinese(drills):
    _, page = html_of(drills, FAILED, "zh")
    text = text_of(page)
    assert page.count('lang="zh-CN"') == 1
    assert "应急演练报告" in text and "演练结论: 未通过" in text
    for row in ("故障发现时间 60 秒 12.4 秒 达标", "恢复时间目标 (RTO) 300 秒 未测得 未达标",
                "恢复点目标 (RPO)：丢失的已确认写入 0 笔 3 笔 未达标", "41.0 秒 未达标"):
        assert row in text, row
    assert "F1 高 Recovery failed" in text and "ops-bob 2026-12-31 未完成" in text
    assert "尚未签字确认" in text and "记录保存期限至 2029-12-01" in text and "李娜" in text


def test_failed_drill_in_english_timeline_in_order(drills):
    _, page = html_of(drills, FAILED, "en")
    text = text_of(page)
    assert "Outcome: FAILED" in text and text.count("FAIL") >= 4
    assert "Recovery time objective (RTO) 300 s not measured FAIL" in text
    # the record lists the fault before the steady state; the report orders events by time
    times = re.findall(r'<time class="time" datetime="([^"]+)"', page.split("<h2>Timeline</h2>")[1].split("<h2>")[0])
    assert len(times) == 9 and times == sorted(times)
    timeline = text.split("Timeline")[1]
    assert timeline.index("Steady state: invariants hold") < timeline.index("Fault injected: 4 KiB")
    assert "trial balance off by 1130.00" in text and "ErpDatabaseDown rb-20261202-0310-dbdown — failed" in text


def test_every_value_is_escaped_and_nothing_is_loaded(drills):
    add_finding(drills, PASSED, "<script>alert('finding')</script> probe slow", "medium",
                action='<img src=x onerror="alert(1)">', owner="</td><td>owner", due="2027-01-31")
    for lang in ("en", "zh"):
        _, page = html_of(drills, PASSED, lang)
        assert "<script" not in page and "<img" not in page and "</td><td>owner" not in page
        assert "&lt;script&gt;alert(&#x27;finding&#x27;)&lt;/script&gt; probe slow" in page
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
        tags = re.findall(r"<[^>]*>", page)  # every value is escaped: only the report's own tags remain
        assert not [t for t in tags if re.search(r"\s(src|href|on\w+)\s*=", t)]  # nothing loaded, no handler
        assert not re.search(r"url\(|@import", page.split("</style>")[0])  # the CSS loads nothing either
        assert 'content="default-src &#x27;none&#x27;' in page  # and a policy that forbids loading anything


def test_json_report_round_trips(drills):
    written = report.write(drills, FAILED, "json", "en")
    data = json.loads(open(written["path"], encoding="utf-8").read())
    record = layout.path(drills.data_dir, "drill_record", id=FAILED)
    assert data["record"] == json.loads(record.read_text(encoding="utf-8"))
    assert data["report"]["record_sha256"] == sha256(record) == written["record_sha256"]
    assert [r["pass"] for r in data["report"]["results"]] == [True, False, False, False]
    assert data["report"]["objectives"]["lead_seconds"] == pytest.approx(19.95)
    assert {a["state"] for a in data["report"]["artifacts"]} == {"matches"}
    assert json.loads(report.render_json(report.build(drills.data_dir, FAILED), "en"))["record"] == data["record"]


def test_an_altered_artifact_and_objectives_declared_late_are_shown(drills):
    directory = layout.path(drills.data_dir, "drill", id=PASSED)
    with open(directory / "workload.jsonl", "a") as f:
        f.write('{"forged": true}\n')
    (directory / "runbook-run.txt").unlink()
    record = json.loads((directory / "record.json").read_text())
    record["objectives"]["declared_at"] = "2026-12-01T02:15:30.000Z"  # after the fault at 02:15:20
    (directory / "record.json").write_text(json.dumps(record))
    text = text_of(html_of(drills, PASSED, "en")[1])
    assert "DIFFERS" in text and "MISSING" in text
    assert "WARNING: declared after the fault" in text


def test_the_command_and_its_errors(drills, tmp_path):
    out = tmp_path / "out" / "report.html"
    r = ok("--json", "drill", "report", PASSED, "--lang", "zh", "--out", out, "--data-dir", drills.data_dir)
    written = json.loads(r.stdout)
    assert written["path"] == str(out) and written["sha256"] == sha256(out) and "应急演练报告" in out.read_text()
    r = ok("evidence", "check-file", out, "--data-dir", drills.data_dir)
    assert "drill.report" in r.stdout
    body = out.read_bytes()
    at = body.index("应急演练报告".encode())
    out.write_bytes(body[:at] + b"X" + body[at + 1:])  # one byte of the report changed
    r = erpctl("evidence", "check-file", out, "--data-dir", drills.data_dir)
    assert r.returncode == 19, r.stdout + r.stderr
    r = erpctl("drill", "report", "20261203T000000Z-erp-killed", "--data-dir", drills.data_dir)
    assert r.returncode == 80 and "no drill 20261203T000000Z-erp-killed" in r.stderr and "drill list" in r.stderr
    r = erpctl("drill", "report", "../../etc", "--data-dir", drills.data_dir)
    assert r.returncode == 80 and "is not a drill id" in r.stderr


def test_pdf_without_a_renderer_names_the_fix(drills, monkeypatch):
    monkeypatch.setattr(report, "find_chromium", lambda: None)
    with pytest.raises(NoPdfRenderer) as err:
        report.write(drills, PASSED, "pdf", "en")
    assert "apt-get install chromium" in err.value.fix and err.value.exit_code == 84
    assert not list(layout.path(drills.data_dir, "drill", id=PASSED).glob("*.pdf"))


def pdf_text(path) -> str:
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                              check=True).stdout
    return ""


@pytest.mark.parametrize("lang, words", [("en", ["Emergency drill report", "FAILED", "not measured"]),
                                         ("zh", ["应急演练报告", "未通过", "恢复时间目标 (RTO)"])])
def test_pdf_report(drills, lang, words):
    if report.find_chromium() is None:
        need("Chromium is not installed (apt-get install chromium): no PDF renderer")
    written = report.write(drills, FAILED, "pdf", lang)
    raw = open(written["path"], "rb").read()
    assert raw.startswith(b"%PDF-") and raw.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", raw))
    assert 1 <= pages <= 6, pages
    text = " ".join(pdf_text(written["path"]).split())
    print(f"{written['path']}: {pages} page(s), {len(raw)} bytes"
          + ("" if text else " (pdftotext not installed: text not checked)"))
    if text:
        for word in words:
            assert word in text, word
    assert EvidenceLog(drills.data_dir).records()[-1]["data"]["file"]["sha256"] == sha256(written["path"])


def test_the_report_says_whether_the_evidence_log_vouches_for_the_record(drills):
    assert "no evidence record names it yet" in text_of(html_of(drills, PASSED, "en")[1])
    review.sign_off(drills, PASSED, "drill lead", "Wang Fang")
    seq = EvidenceLog(drills.data_dir).records()[-1]["seq"]
    assert f"matches evidence record {seq} (drill.signoff)" in text_of(html_of(drills, PASSED, "en")[1])
    path = layout.path(drills.data_dir, "drill_record", id=PASSED)
    path.write_text(path.read_text().replace('"rto_seconds": 31.5', '"rto_seconds": 3.5'))  # a quiet edit
    _, page = html_of(drills, PASSED, "zh")
    assert f"与证据日志第 {seq} 条记录（drill.signoff）不一致" in text_of(page)
    data = json.loads(report.render_json(report.build(drills.data_dir, PASSED), "en"))
    assert data["report"]["record_evidence"]["state"] == "differs"
