"""erpctl runbook list: the runbooks (name, title, severity, alerts)."""

from __future__ import annotations

import click

from .options import emit, json_option, target_options
from .runbook_common import installation, runbooks_option


def render(rows: list[dict], directory) -> str:
    if not rows:
        return f"no runbooks in {directory}"
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'NAME':<{width}}  SEVERITY  TITLE  [ALERTS]"]
    lines += [f"{r['name']:<{width}}  {r['severity']:<8}  {r['title']}  "
              f"[{', '.join(r['alerts']) if r['kind'] == 'alert' else 'procedure'}]" for r in rows]
    return "\n".join(lines)


@click.command("list")
@target_options
@runbooks_option
@json_option
def list_(data_dir, database_url, runbooks_dir):
    """List the runbooks (name, title, severity, alerts).

    [procedure]: a runbook no alert names (run when people decide to).

    NAME is what `erpctl runbook show|run` take (the file's name; the front matter's id works too)."""
    from ..runbook.parse import parse_runbook, runbook_paths

    directory = installation(data_dir, database_url, runbooks_dir).get("runbooks_dir")
    rows = []
    for path in runbook_paths(directory):
        rb = parse_runbook(path)
        rows.append({"name": rb.name, "id": rb.meta.get("id"), "title": rb.title,
                     "severity": str(rb.meta.get("severity", "")), "owner": rb.meta.get("owner"),
                     "alerts": list(rb.meta.get("alerts") or []), "kind": rb.kind, "steps": len(rb.steps),
                     "path": str(path)})
    emit({"runbooks_dir": str(directory), "runbooks": rows}, render(rows, directory))
