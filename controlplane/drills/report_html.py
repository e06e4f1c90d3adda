"""The HTML drill report: one self-contained page (inline CSS, no script, no external resource, a
Content-Security-Policy that forbids loading anything) that an auditor opens offline and prints.
Every value from the record goes through `e()` (HTML-escaped)."""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import TYPE_CHECKING

from .report_events import check_html, event_html, finding_html
from .report_i18n import word, words
from .review import parse_time

if TYPE_CHECKING:
    from .report import Report

CSS = """
:root{--ink:#1b1f24;--muted:#57606a;--line:#d0d7de;--pass:#1a7f37;--fail:#cf222e;--warn:#9a6700;--head:#f3f5f7}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","WenQuanYi Micro Hei",
 "Microsoft YaHei",sans-serif;color:var(--ink);margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid var(--ink);
 padding-bottom:3px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
th{background:var(--head);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,.hash{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
.time{white-space:nowrap;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:700;border:1px solid}
.pass{color:var(--pass);border-color:var(--pass)}.fail{color:var(--fail);border-color:var(--fail)}
.warn{color:var(--warn);font-weight:600}.muted{color:var(--muted)}
.verdict{font-size:18px;margin:10px 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:6px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.scroll{overflow-x:auto}.scroll:focus-visible{outline:2px solid #0969da;outline-offset:2px}
@media (max-width:600px){body{padding:12px}dl.facts{grid-template-columns:1fr;gap:0}dl.facts dd{margin-bottom:4px}}
footer{margin-top:28px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
@page{size:A4;margin:14mm 12mm}
@media print{body{padding:0;max-width:none;font-size:11px}.scroll{overflow:visible}h2{break-after:avoid}
 tr,dl.facts{break-inside:avoid}thead{display:table-header-group}
 .badge{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def e(value) -> str:
    """Any value as escaped HTML text (None as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _time(text) -> str:
    when = parse_time(text)
    if when is None:
        return f'<span class="time">{e(text)}</span>'
    shown = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return f'<time class="time" datetime="{e(text)}">{e(shown)}</time>'


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if value != int(value) or abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _table(head: list[str], rows: list[list[str]], t: dict, classes: list[str] | None = None) -> str:
    """A table of already escaped cells (or the word 'none')."""
    if not rows:
        return f'<p class="muted">{e(t["none"])}</p>'
    classes = classes or [""] * len(head)
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{cell}</td>' if c else f"<td>{cell}</td>"
                                    for c, cell in zip(classes, row)) + "</tr>" for row in rows)
    return f'<div class="scroll" tabindex="0"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _facts(pairs: list[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _badge(ok: bool | None, t: dict) -> str:
    if ok is None:
        return '<span class="muted">—</span>'
    return f'<span class="badge pass">{e(t["pass"])}</span>' if ok else f'<span class="badge fail">{e(t["fail"])}</span>'


def _seconds(value, t: dict) -> str:
    return e(t["unit_seconds"].format(value=_number(value)))


def _duration(rec: dict, t: dict) -> str:
    seconds = (rec.get("measured") or {}).get("duration_seconds")
    return e(t["none"]) if seconds is None else _seconds(seconds, t)


def _header(r: Report, t: dict) -> str:
    rec = r.record
    state = str(rec.get("state", ""))
    cls = "pass" if state == "passed" else "fail"
    scenario = rec.get("scenario") or {}
    return (f'<h1>{e(t["title"])}</h1><p class="muted">{e(scenario.get("title") or scenario.get("name"))}</p>'
            f'<p class="verdict">{e(t["verdict"])}: <span class="badge {cls}" id="verdict">'
            f'{e(word(t, "state_" + state, state))}</span></p>'
            + _facts([(t["drill"], f"<code>{e(rec.get('id'))}</code>"),
                      (t["started"], _time(rec.get("started_at"))),
                      (t["ended"], _time(rec.get("ended_at")) if rec.get("ended_at") else e(t["none"])),
                      (t["duration"], _duration(rec, t)),
                      (t["retention"], f'<span id="retention">{e(rec.get("retention_until"))}</span>')]))


def _scenario(r: Report, t: dict) -> str:
    rec = r.record
    sc = rec.get("scenario") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (rec.get("versions") or {}).items())
    window = rec.get("window") or {}
    pairs = [(t["scenario_name"], f"<code>{e(sc.get('name'))}</code> — {e(sc.get('title'))}"),
             (t["scenario_file"], f"<code>{e(sc.get('file'))}</code> <span class=\"hash\">{e(sc.get('sha256'))}</span>"),
             (t["fault"], f"<code>{e(sc.get('fault'))}</code>"),
             (t["destructive"], e(t["yes"] if sc.get("destructive") else t["no"])),
             (t["target"], e(word(t, "target_" + str(rec.get("target")), str(rec.get("target"))))), (t["backend"], e(rec.get("backend"))),
             (t["versions"], e(versions)), (t["operator"], e(rec.get("operator")))]
    if window:
        pairs.append((t["window"], f"{_time(window.get('start'))} – {_time(window.get('end'))}"))
    return f'<h2>{e(t["scenario"])}</h2>' + _facts(pairs)


def _lead(seconds: float | None, t: dict) -> str:
    if seconds is None:
        return f'<span class="warn">{e(t["no_fault"])}</span>'
    if seconds < 0:
        return f'<span class="warn" id="declared-late">{e(t["declared_after"])}</span>'
    return e(t["declared_before"].format(seconds=t["unit_seconds"].format(value=_number(float(seconds)))))


def _objectives(r: Report, t: dict) -> str:
    ob = r.objectives
    rows = [[e(t["obj_" + o["objective"]]), _target(o["objective"], o["target"], t)] for o in r.results]
    return (f'<h2>{e(t["objectives"])}</h2>'
            + _facts([(t["declared_at"], _time(ob.get("declared_at"))),
                      (t["fault_at"], _time(ob.get("fault_at")) if ob.get("fault_at") else e(t["none"])),
                      ("", _lead(ob.get("lead_seconds"), t))])
            + _table([t["objective"], t["target_value"]], rows, t, ["", "num"]))


def _target(objective: str, value, t: dict) -> str:
    if value is None:
        return e(t["none"])
    unit = "unit_writes" if objective == "rpo_writes" else "unit_seconds"
    return e(t[unit].format(value=_number(value)))


def _people(r: Report, t: dict) -> str:
    rec = r.record
    part = [[e(p.get("name")), e(p.get("role"))] for p in rec.get("participants") or []]
    appr = [[e(a.get("by")), _time(a.get("at")), e(a.get("comment"))] for a in rec.get("approvals") or []]
    return (f'<h2>{e(t["people"])}</h2><h3>{e(t["participants"])}</h3>'
            + _table([t["name"], t["role"]], part, t)
            + f'<h3>{e(t["approvals"])}</h3>' + _table([t["name"], t["at"], t["comment"]], appr, t))


def _results(r: Report, t: dict) -> str:
    rows = []
    for o in r.results:
        measured = o["measured"]
        shown = _target(o["objective"], measured, t) if measured is not None else \
            f'<span class="warn">{e(t["not_measured"])}</span>'
        rows.append([e(t["obj_" + o["objective"]]), _target(o["objective"], o["target"], t), shown,
                     f'<span data-objective="{e(o["objective"])}">{_badge(o["pass"], t)}</span>'])
    acknowledged = (r.record.get("measured") or {}).get("acknowledged_writes")
    note = f'<p>{e(t["acknowledged"].format(value=acknowledged))}</p>' if acknowledged is not None else ""
    return (f'<h2>{e(t["results"])}</h2>'
            + _table([t["objective"], t["target_value"], t["measured"], t["result"]], rows, t,
                     ["", "num", "num", ""]) + note + _detection(r, t))


def _detection(r: Report, t: dict) -> str:
    """How the fault was detected: the probes' time, the alert's pending and firing times in the drill's
    Prometheus, its `for` (as shipped or shortened), which one the objective judged; or why no alert."""
    det, m = r.record.get("detection") or {}, r.record.get("measured") or {}
    if not det:
        return ""
    prom = det.get("prometheus") or {}

    def secs(key):
        return _seconds(m[key], t) if m.get(key) is not None else e(t["none"])

    pairs = [(t["det_probes"], secs("probe_detection_seconds"))]
    if det.get("alert"):
        pairs.append((t["det_alert"], f'<code>{e(det["alert"])}</code>'))
    if prom:
        how = (t["det_for_shortened"].format(value=f'{prom.get("for_seconds"):g}',
                                             shipped=f'{prom.get("shipped_for_seconds"):g}')
               if prom.get("for_shortened") else t["det_for_shipped"].format(value=f'{prom.get("for_seconds"):g}'))
        pairs += [(t["det_pending"], secs("alert_pending_seconds")), (t["det_firing"], secs("alert_firing_seconds")),
                  (t["det_for"], f'<span data-for-shortened="{str(bool(prom.get("for_shortened"))).lower()}">'
                                 f'{e(how)}</span>')]
        if det.get("alert_outcome"):
            pairs.append((t["det_outcome"], e(word(t, "det_" + det["alert_outcome"].replace(" ", "_"),
                                                   det["alert_outcome"]))))
    elif det.get("alert"):
        pairs.append((t["det_prometheus"], e(t["det_" + det.get("fallback_reason", "not-installed").replace("-", "_")]
                                           if det.get("fallback") else t["none"])))
    pairs.append((t["det_judged"], e(word(t, "det_by_" + str(det.get("judged") or det.get("by")),
                                          str(det.get("judged") or det.get("by"))))))
    return f'<h3>{e(t["detection"])}</h3>' + _facts(pairs)


def _detail(detail) -> str:
    if not detail:
        return ""
    if isinstance(detail, dict):
        return "<br>".join(f"<code>{e(k)}</code>: {e(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)}"
                           for k, v in detail.items())
    return e(detail)


def _lang(t: dict) -> str:
    return "en" if t["html_lang"] == "en" else "zh"


def _timeline(r: Report, t: dict) -> str:
    rows = [[_time(ev.get("at")), e(word(t, "phase_" + str(ev.get("phase")), str(ev.get("phase")))),
             event_html(ev.get("event"), _lang(t), e), _detail(ev.get("detail"))] for ev in r.timeline]
    return f'<h2>{e(t["timeline"])}</h2>' + _table([t["at"], t["phase"], t["event"], t["detail"]], rows, t)


def _checks(r: Report, t: dict) -> str:
    rec = r.record
    rows = [[check_html(c.get("name"), _lang(t), e), e(word(t, "phase_" + str(c.get("phase")), str(c.get("phase")))),
             f'<span class="badge {"pass" if c.get("ok") else "fail"}">{e(t["ok"] if c.get("ok") else t["not_ok"])}'
             "</span>", e(c.get("detail"))] for c in rec.get("checks") or []]
    out = f'<h2>{e(t["checks"])}</h2>' + _table([t["check"], t["phase"], t["result"], t["detail"]], rows, t)
    pairs = []
    if rb := rec.get("runbook"):
        pairs.append((t["runbook"], f"<code>{e(rb.get('name'))}</code> {e(rb.get('run_id'))} — {e(rb.get('outcome'))}"))
    if (cl := rec.get("cleanup")) is not None:
        left = ", ".join(map(str, cl.get("left_over") or []))
        text = t["cleanup_ok"] if cl.get("ok") and not left else t["cleanup_left"].format(items=left or "?")
        pairs.append((t["cleanup"], e(text) if cl.get("ok") else f'<span class="warn">{e(text)}</span>'))
    return out + (_facts(pairs) if pairs else "")


def _findings(r: Report, t: dict) -> str:
    rec = r.record
    found = [[e(f.get("id")), e(word(t, "sev_" + str(f.get("severity")), str(f.get("severity")))),
              finding_html(f.get("text"), _lang(t), e)]
             for f in rec.get("findings") or []]
    items = [[e(i.get("finding")), e(i.get("action")), e(i.get("owner")), e(i.get("due")),
              e(word(t, "status_" + str(i.get("status")), str(i.get("status"))))] for i in rec.get("remediation") or []]
    return (f'<h2>{e(t["findings"])}</h2>' + _table([t["finding_id"], t["severity"], t["text"]], found, t)
            + f'<h2>{e(t["remediation"])}</h2>'
            + _table([t["finding_id"], t["action"], t["owner"], t["due"], t["status"]], items, t))


def _signoffs(r: Report, t: dict) -> str:
    rows = [[e(s.get("role")), e(s.get("name")), _time(s.get("at")), e(s.get("comment"))]
            for s in r.record.get("signoffs") or []]
    body = _table([t["role"], t["name"], t["at"], t["comment"]], rows, t) if rows else \
        f'<p class="warn">{e(t["not_signed"])}</p>'
    return f'<h2>{e(t["signoffs"])}</h2>' + body


def _integrity(r: Report, t: dict) -> str:
    rows = [[f"<code>{e(a['name'])}</code>", e(a.get("bytes")), f'<span class="hash">{e(a.get("sha256"))}</span>',
             e(t[a["state"]]) if a["state"] == "matches" else f'<span class="warn">{e(t[a["state"]])}</span>']
            for a in r.artifacts]
    ev = r.evidence or {"state": "unrecorded"}
    said = e(t["evidence_" + ev["state"]].format(seq=ev.get("seq"), kind=ev.get("kind")))
    rows.append([f"<code>{e(t['record_file'])}</code>", "", f'<span class="hash" id="record-sha256">'
                 f'{e(r.record_sha256)}</span>',
                 f'<span id="record-evidence">{said}</span>' if ev["state"] == "matches" else
                 f'<span class="warn" id="record-evidence">{said}</span>'])
    return (f'<h2>{e(t["integrity"])}</h2>'
            + _table([t["artifact"], t["bytes"], t["sha256_recorded"], t["on_disk"]], rows, t, ["", "num", "", ""]))


SECTIONS = (_header, _scenario, _objectives, _people, _results, _timeline, _checks, _findings, _signoffs,
            _integrity)


def render_html(report: Report, lang: str) -> str:
    t = words(lang)
    body = "\n".join(section(report, t) for section in SECTIONS)
    footer = e(t["generated"].format(at=report.generated_at, version=report.version))
    title = f'{t["title"]} — {report.record.get("id", "")}'
    return (f'<!DOCTYPE html>\n<html lang="{e(t["html_lang"])}"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            f"<footer>{footer}</footer>\n</body></html>\n")
