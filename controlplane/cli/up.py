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
             f"  Console    {info['ops_url'].rstrip('/')}/console/  (accounts: 'erpctl console user add NAME --role "
             "operator|auditor')",
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


def render_detached(r: dict) -> str:
    if not r["started"]:
        return f"erpctl up of {r['data_dir']} runs already (pid {r['pid']}, ERP {r['erp_url']}): nothing started"
    return (f"started erpctl up of {r['data_dir']} in the background (pid {r['pid']}); ERP {r['erp_url']} ready "
            f"after {r['ready_seconds']:.1f} s; output in {r['log']}; 'erpctl stop' ends it")


@click.command()
@target_options
@click.option("--demo", is_flag=True, help="Add demo users (one per role) and demo data on first start.")
@click.option("--host", help="Address to listen on. Default: 127.0.0.1 [env ERPCTL_HOST, erpctl.toml [erp] host]")
@click.option("--erp-port", type=click.IntRange(0, 65535),
              help="Port of the ERP (web pages, REST API). Default: 8000 [env ERPCTL_ERP_PORT, erpctl.toml [erp] port]")
@click.option("--ops-port", type=click.IntRange(0, 65535),
              help="Port of the ops console. Default: 8001 [env ERPCTL_OPS_PORT, erpctl.toml [ops] port]")
@click.option("--ops-host", help="Address the ops console listens on. Default: --host [env ERPCTL_OPS_HOST, "
                                 "erpctl.toml [ops] host]")
@click.option("--detach", is_flag=True, help="Start erpctl up in the background (its output appended to erpctl-up.log) "
                                            "unless it runs already, wait until the ERP is ready, and return.")
@click.option("--ready-timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              metavar="S", help="With --detach: seconds to wait for the ERP's /readyz to answer 200.")
@json_option
def up(data_dir, database_url, demo, host, erp_port, ops_port, ops_host, detach, ready_timeout):
    """Serve the ERP and the ops console until SIGINT or SIGTERM.

    First start: creates the data directory, its field-encryption key and the database; with --demo
    also demo users and a year of demo data. Refuses to start when a port is taken or the database
    schema is not supported by the code that serves it.

    When a release is current ('erpctl release current'), its ERP serves as a child process: restarted
    if it exits, and replaced within seconds when the current release is switched (by an upgrade, a
    rollback or by hand). Otherwise the erp_core bundled with erpctl serves.

    With --detach it starts in the background and returns once the ERP is ready ("started": true), or
    at once when this data directory's erpctl up runs already ("started": false): what a service manager
    without systemd (the playbooks' erp_service_manager: erpctl) runs; 'erpctl stop' ends it.
    """
    inst = target(data_dir, database_url, host=host, erp_port=erp_port, ops_port=ops_port, ops_host=ops_host)
    if detach:
        from ..lifecycle.start import start

        result = start(inst, ready_timeout, demo=demo)
        emit(result, render_detached(result))
        return
    opts = stack.UpOptions(inst, host=inst.get("host"), erp_port=inst.get("erp_port"), ops_port=inst.get("ops_port"),
                           demo=demo, ops_host=inst.get("ops_host"), metrics_token=inst.get("metrics_token"),
                           mfa_roles=inst.get("mfa_roles"),
                           trusted_proxies=inst.get("trusted_proxies"),
                           company=tuple(inst.get(f"company_{k}")
                                         for k in ("name", "tax_id", "address", "bank_account")),
                           erp_workers=inst.get("erp_workers"), erp_threads=inst.get("erp_threads"))
    result = stack.run(opts, lambda info: emit({"event": "started", **info}, render_started(info)))
    if state().json:
        emit(result)
    else:
        click.echo("stopped", err=True)
