"""erpctl runbook show NAME: the steps of a runbook with their commands."""

from __future__ import annotations

import textwrap

import click

from .options import emit, json_option, target_options
from .runbook_common import installation, runbooks_option


def _as_dict(rb) -> dict:
    return {"name": rb.name, "path": str(rb.path), "meta": rb.meta, "title": rb.title,
            "steps": [{"number": s.number, "title": s.title, "kind": s.kind, "manual": s.manual, "text": s.prose,
                       "blocks": [{"lang": b.lang, "confirm": b.confirm, "code": b.code} for b in s.executed]}
                      for s in rb.steps]}


def render(r: dict) -> str:
    m = r["meta"]
    lines = [f"{r['name']}: {r['title']}",
             f"severity {m.get('severity')}, owner {m.get('owner')}, alerts {', '.join(m.get('alerts') or [])}"]
    for s in r["steps"]:
        lines += ["", f"{s['number']}. {s['title']}" + ("  (manual)" if s["manual"] else "")]
        for b in s["blocks"]:
            lines.append(f"   ```{b['lang']}{' confirm' if b['confirm'] else ''}")
            lines.append(textwrap.indent(b["code"].rstrip("\n"), "   "))
            lines.append("   ```")
    return "\n".join(lines)


@click.command()
@click.argument("name")
@target_options
@runbooks_option
@json_option
def show(name, data_dir, database_url, runbooks_dir):
    """Show a runbook's steps with their commands (confirm: asks before running; manual: people's work)."""
    from ..runbook.parse import find

    rb = find(installation(data_dir, database_url, runbooks_dir).get("runbooks_dir"), name)
    r = _as_dict(rb)
    emit(r, render(r))
