"""erpctl release list: the installed ERP releases, the current one marked."""

from __future__ import annotations

import click

from .. import __version__, release
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    if not r["releases"]:
        return (f"no release installed in {r['directory']}: 'erpctl up' serves the bundled erp_core "
                f"{r['bundled_version']}. Install one with 'erpctl release install WHEEL'.")
    lines = [f"  {'version':<14}{'schema head':<13}{'installed (UTC)':<34}wheel"]
    for x in r["releases"]:
        mark = "*" if x["current"] else " "
        lines.append(f"{mark} {x['version']:<14}{x['schema_head'] or '-':<13}{x['installed_at']:<34}{x['wheel']['file']}")
    lines.append(f"{len(r['releases'])} release(s); * = current" if r["current"] else
                 f"{len(r['releases'])} release(s); none is current: 'erpctl up' serves the bundled erp_core "
                 f"{r['bundled_version']}")
    return "\n".join(lines)


@click.command(name="list")
@target_options
@json_option
def list_(data_dir, database_url):
    """List the installed releases (version, schema head, install time, wheel); * marks the current one."""
    t = target(data_dir, database_url)
    current = release.current_version(t)
    items = [{**r.as_dict(), "current": r.version == current} for r in release.releases(t)]
    result = {"directory": str(release.releases_dir(t)), "current": current, "bundled_version": __version__,
              "releases": items}
    emit(result, render(result))
