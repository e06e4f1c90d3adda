"""erpctl drill report: a drill's report for auditors (HTML, JSON or PDF; English or Chinese)."""

from __future__ import annotations

import click

from .options import emit, json_option, target, target_options


@click.command()
@click.argument("drill_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["html", "json", "pdf"]), default="html", show_default=True,
              help="html: one self-contained page to open offline and print; pdf: that page printed by headless "
                   "Chromium; json: the record with the report's checks.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="English or Simplified Chinese (简体中文).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str),
              help="Where to write it. Default: <data dir>/drills/ID/report-LANG.FORMAT")
@target_options
@json_option
def report(drill_id, fmt, lang, out, data_dir, database_url):
    """Write a drill's report for auditors: scenario, objectives, timeline, RTO/RPO against targets, checks,
    findings, sign-offs, hashes."""
    from ..drills.report import write

    written = write(target(data_dir, database_url), drill_id, fmt, lang, out)
    emit(written, f"{written['path']}\nsha256 {written['sha256']}  ({written['format']}, {written['lang']}, "
                  f"drill {written['state']})")
