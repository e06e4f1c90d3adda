"""erpctl up: serve the ERP and the ops console (first start creates everything)."""

from __future__ import annotations

import click

from .. import stack
from .options import emit, json_option, state, target, target_options


def render_started(info: dict) -> str:
    lines = [f"erpctl {info['version']} is up",
             f"  ERP        {info['erp_url']}",
             f"  API docs   {info['api_docs_url']}",
             f"  Ops        {info['ops_url']}  (health: {info['healthz_url']})",
             f"  Data       {info['data_dir']}  (database {info['database']}, schema {info['schema_revision']})"]
    rel = info.get("release")
    if rel:
        lines.append(f"  Release    {rel['version']} serves the ERP (pid {rel['pid']}, {rel['path']}); "
                     "it follows 'erpctl release current'")
    else:
        lines.append(f"  Release    none installed: the bundled erp_core {info['erp_version']} serves the ERP")
    demo = info["demo"]
    if demo:
        if demo["password"]:
            lines.append(f"  Demo login: {demo['username']} / {demo['password']}")
        else:
            lines.append(f"  Demo login: {demo['username']} (password unknown: {demo['note']})")
        others = [u for u in demo["users"] if u != demo["username"]]
        if others:
            lines.append(f"  Other demo users (same password): {', '.join(others)}")
    else:
        lines.append("  Users: add one with 'erpctl erp user add NAME --role admin --password-stdin'")
    lines.append("Stop with Ctrl+C (or SIGTERM).")
    return "\n".join(lines)


@click.command()
@target_options
@click.option("--demo", is_flag=True, help="Add demo users (one per role) and demo data on first start.")
@click.option("--host", help="Address to listen on. Default: 127.0.0.1 [env ERPCTL_HOST, erpctl.toml [erp] host]")
@click.option("--erp-port", type=click.IntRange(0, 65535),
              help="Port of the ERP (web pages, REST API). Default: 8000 [env ERPCTL_ERP_PORT, erpctl.toml [erp] port]")
@click.option("--ops-port", type=click.IntRange(0, 65535),
              help="Port of the ops console. Default: 8001 [env ERPCTL_OPS_PORT, erpctl.toml [ops] port]")
@json_option
def up(data_dir, database_url, demo, host, erp_port, ops_port):
    """Serve the ERP and the ops console until SIGINT or SIGTERM.

    First start: creates the data directory, its field-encryption key and the database; with --demo
    also demo users and a year of demo data. Refuses to start when a port is taken or the database
    schema is not supported by the code that serves it.

    When a release is current ('erpctl release current'), its ERP serves as a child process: restarted
    if it exits, and replaced within seconds when the current release is switched (by an upgrade, a
    rollback or by hand). Otherwise the erp_core bundled with erpctl serves.
    """
    inst = target(data_dir, database_url, host=host, erp_port=erp_port, ops_port=ops_port)
    opts = stack.UpOptions(inst, host=inst.get("host"), erp_port=inst.get("erp_port"), ops_port=inst.get("ops_port"),
                           demo=demo)
    result = stack.run(opts, lambda info: emit({"event": "started", **info}, render_started(info)))
    if state().json:
        emit(result)
    else:
        click.echo("stopped", err=True)
