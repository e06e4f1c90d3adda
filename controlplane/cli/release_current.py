"""erpctl release current [VERSION]: show the current release, or switch to another one (no migration)."""

from __future__ import annotations

import click

from .. import __version__, release
from .options import emit, json_option, target, target_options


def render_show(r: dict) -> str:
    c = r["current"]
    if c is None:
        return f"no release is current: 'erpctl up' serves the bundled erp_core {r['bundled_version']}"
    return f"{c['version']}  ({c['path']}, schema head {c['schema_head']}, installed {c['installed_at']})"


def render_switch(r: dict) -> str:
    if not r["changed"]:
        return f"release {r['to']} is already current: nothing to do"
    schema = r["schema"]
    checked = (f"its code accepts the database's schema ({schema['current'] or 'none yet'}: {schema['reason']})"
               if schema else "the schema was not checked")
    return "\n".join([f"switched the current release: {r['from'] or '(bundled erp_core)'} -> {r['to']}",
                      f"This does not migrate the database; {checked}.",
                      "A running 'erpctl up' serves the new release within a few seconds."])


@click.command(name="current")
@click.argument("version", required=False)
@click.option("--reason", default="", metavar="TEXT", help="Why you switch (kept in the evidence log).")
@target_options
@json_option
def current(version, reason, data_dir, database_url):
    """Show the current release, or make VERSION current.

    Switching by hand does not migrate the database: it is refused unless VERSION's own code accepts the
    database's schema (its reason is shown). Upgrades and rollbacks switch releases themselves. The switch
    is atomic and recorded in the evidence log; a running 'erpctl up' follows it.
    """
    t = target(data_dir, database_url)
    if version is None:
        c = release.current(t)
        result = {"current": c.as_dict() if c else None, "bundled_version": __version__}
        emit(result, render_show(result))
        return
    result = release.set_current(t, version, reason=reason or "erpctl release current")
    emit(result, render_switch(result))
