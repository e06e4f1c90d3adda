"""erpctl audit report: every backup verification, restore test, upgrade, runbook run and drill in a period."""

from __future__ import annotations

import click

from ..audit import parse_when, report as build
from ..errors import EvidenceTampered
from ..evidence import EvidenceLog
from .options import emit, json_option, target, target_options


def _when(text: str | None, end: bool = False):
    if text is None:
        return None
    try:
        return parse_when(text, end=end)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time: give "
                                 "--since 2026-01-01 (and --until 2026-03-31, inclusive)") from None


def render(r: dict) -> str:
    c = r["chain"]
    if c["ok"]:
        signed = (f"; unsigned up to record {c['unsigned_through']}" if c["unsigned_through"] else "")
        lines = [f"evidence log: intact, {c['records']} record(s), {c['signed']} signed{signed}"]
    else:
        lines = [f"evidence log: NOT INTACT: {c['first_problem']['detail']}",
                 "  (what follows is what the log says; 'erpctl evidence verify --anchors' names what changed)"]
    lines.append(f"period: {r['since']} to {r['until']} ({r['records_in_period']} record(s))")
    lines.append("")
    lines.append(f"{'what':<38}{'count':>6}{'ok':>6}{'failed':>8}{'other':>7}  latest")
    failures = []
    for row in r["categories"].values():
        latest = row["latest"]
        last = f"{latest['at'][:19]} {latest['outcome']} (record {latest['seq']})" if latest else "-"
        lines.append(f"{row['title']:<38}{row['count']:>6}{row['ok']:>6}{row['failed']:>8}{row['other']:>7}  {last}")
        failures += [(row["title"], f) for f in row["failures"]]
    lines.append("")
    if not failures:
        lines.append("failures: none")
    else:
        lines.append(f"failures ({len(failures)}):")
        for title, f in failures:
            what = ", ".join(f"{k}={v}" for k, v in f["what"].items())
            lines.append(f"  record {f['seq']}  {f['at'][:19]}  {f['kind']}  {f['outcome']}  {what}")
    return "\n".join(lines)


@click.command()
@click.option("--since", required=True, metavar="DATE", help="From this date (YYYY-MM-DD, UTC) or ISO time.")
@click.option("--until", metavar="DATE", help="Up to this date, inclusive (default: now).")
@target_options
@json_option
def report(since, until, data_dir, database_url):
    """Summarise every backup verification, restore test, upgrade, runbook run and drill in a period, from
    the evidence log (chain check on top). Backups and published drill reports are counted too: counts,
    outcomes, the latest of each, every failure.

    Exit 0 with a report (even one that lists failures), 15 when the evidence log is not intact.
    """
    log = EvidenceLog(target(data_dir, database_url).data_dir)
    r = build(log, _when(since), _when(until, end=True))
    emit(r, render(r))
    if not r["chain"]["ok"]:
        raise EvidenceTampered(f"the evidence log is not intact: {r['chain']['first_problem']['detail']}",
                               fix="Run 'erpctl evidence verify --anchors' to see what was changed.")
