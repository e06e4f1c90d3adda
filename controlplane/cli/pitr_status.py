"""erpctl pitr status: the backups pgBackRest holds, the WAL archive and how archiving goes, and the
window a restore can reach."""

from __future__ import annotations

import click

from ..pitr import cluster, pgbackrest
from .backup_common import human_bytes
from .options import emit, json_option, target_options
from .pitr_common import open_pitr


def _archiver(cfg) -> dict:
    try:
        row = cluster.query(cfg.conninfo("postgres"), "SELECT archived_count, last_archived_wal, last_archived_time, "
                            "failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver")[0]
    except Exception as exc:  # noqa: BLE001 - a cluster that does not answer is reported, not fatal here
        return {"answers": False, "error": str(exc).strip()}
    keys = ("archived_count", "last_archived_wal", "last_archived_time", "failed_count", "last_failed_wal",
            "last_failed_time")
    return {"answers": True, **{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in zip(keys, row)}}


@click.command(name="status")
@target_options
@json_option
def status(data_dir, database_url):
    """The backups, the WAL archive, archiving failures and the recoverable window."""
    _inst, cfg = open_pitr(data_dir, database_url)
    stanza = pgbackrest.info(cfg)
    made = [{k: v for k, v in b.items() if k != "stopped_epoch"} for b in pgbackrest.backups(stanza)]
    archive = (stanza.get("archive") or [{}])[-1]
    arch = _archiver(cfg)
    window = {"from": made[0]["stopped"] if made else None, "to": arch.get("last_archived_time")}
    out = {"stanza": cfg.stanza, "status": (stanza.get("status") or {}).get("message"), "backups": made,
           "archive": {"min": archive.get("min"), "max": archive.get("max")}, "archiver": arch,
           "recoverable_window": window, "config": cfg.as_dict()}
    lines = [f"stanza {cfg.stanza}: {out['status']}; cluster {cfg.pg_data} port {cfg.pg_port}",
             f"  {'backup':<24}{'type':<6}{'ended':<27}{'size':>10}{'stored':>10}"]
    lines += [f"  {b['label']:<24}{b['type']:<6}{b['stopped'] or '-':<27}{human_bytes(b['size_bytes'] or 0):>10}"
              f"{human_bytes(b['repo_bytes'] or 0):>10}" for b in made] or ["  (no backup yet: erpctl pitr backup)"]
    lines.append(f"WAL archive {archive.get('min') or '-'} .. {archive.get('max') or '-'}")
    if arch.get("answers"):
        lines.append(f"archiving: {arch['archived_count']} archived, last {arch['last_archived_time']}; "
                     f"{arch['failed_count']} failed"
                     + (f", last {arch['last_failed_time']}" if arch["failed_count"] else ""))
    else:
        lines.append(f"archiving: the cluster does not answer ({arch.get('error')})")
    lines.append(f"recoverable window: {window['from'] or '-'} .. {window['to'] or '-'}")
    emit(out, "\n".join(lines))
