"""What the `erpctl upgrade ...` commands share: their options and the options object."""

from __future__ import annotations

import sys

import click

from .backup_common import ask_passphrase, repo_options
from .options import state, target


def erp_options(fn):
    fn = click.option("--offline", is_flag=True,
                      help="The ERP is stopped on purpose: skip its health check and do not wait for it to "
                           "come back on the new release.")(fn)
    fn = click.option("--erp-url", metavar="URL",
                      help="The running ERP: must be ready before the upgrade and is watched across the release "
                           "switch. Default: where 'erpctl up' serves it for this data directory, else [erp] url "
                           "in erpctl.toml, else http://<host>:<erp port> (8000). [env ERPCTL_ERP_URL]")(fn)
    return repo_options(fn)


def options(data_dir, database_url, erp_url, offline, repo, key_file, lock_wait, **kw):
    # imported here, not at the top: the upgrade engine loads SQLAlchemy, the ERP's models and the backup
    # code (~400 ms of start-up, python -X importtime); upgrade status renders with this module too
    from ..upgrade.engine import UpgradeOptions

    inst = target(data_dir, database_url, erp_url=erp_url, backup_repo=repo, backup_key_file=key_file)
    return UpgradeOptions(target=inst, erp_url=None if offline else inst.get("erp_url"), repo=repo,
                          key_file=key_file, lock_wait=lock_wait, ask_passphrase=ask_passphrase, on_event=_echo,
                          **kw)


def _echo(what: str, data: dict) -> None:
    """Stage lines on a terminal (the logs carry them otherwise)."""
    if not state().json and sys.stderr.isatty():
        extra = " ".join(f"{k}={v}" for k, v in data.items())
        click.echo(f"upgrade: {what} {extra}".rstrip(), err=True)


def render_summary(r: dict) -> str:
    lines = [f"upgrade {r['id']}: {r['from_version']} -> {r['to_version']} "
             f"(schema {r['from_revision']} -> {r['to_revision']}): {r['status']}"
             + (f" at stage {r['stage']}" if r['status'] not in ('done', 'rolled_back') else "")]
    for name, s in (r.get("stages") or {}).items():
        if s.get("seconds") is not None:
            lines.append(f"  {name:<10} {s['seconds']:>8.2f} s  {s.get('detail') or ''}")
        else:
            lines.append(f"  {name:<10}  (started {s.get('started_at')})")
    bf = r.get("backfill") or {}
    stopped = r.get("alive") is False  # an ETA would say it is still moving
    for b in bf.get("backfills", []):
        eta = "stopped" if stopped else f"ETA {b['eta_seconds']} s"
        lines.append(f"  backfill {b['name']}: {b['rows_done']}/{b['rows_total']} rows, "
                     f"{b['rows_per_second']} rows/s, {eta}, batch {b['batch']}")
    if bf.get("canary"):
        lines.append(f"  canary writer wait: {bf['canary']}")
    if r.get("error"):
        lines.append(f"  error at {r['error']['stage']}: {r['error']['reason']}")
    if r["status"] == "awaiting_contract":
        lines.append("  contract waits: 'erpctl upgrade resume --confirm-contract' (the point of no return), "
                     "or 'erpctl upgrade rollback'")
    return "\n".join(lines)
