"""erpctl backup show: one backup's manifest (tables, invariants, sizes; --chunks for the chunk list)."""

from __future__ import annotations

import click

from .backup_common import human_bytes, open_repo, repo_options
from .options import emit, json_option, target, target_options


def _snapshot(m: dict) -> str:
    """How the consistent snapshot was taken, from the manifest's details."""
    d = m.get("details") or {}
    if m["engine"] == "postgresql":
        return f"pg_dump of one exported transaction snapshot ({d.get('pg_dump') or 'pg_dump'})"
    how = d.get("capture") or "copy"
    if how == "copy":
        how = "SQLite online-backup copy"
    return f"{how}, {d.get('capture_seconds', '?')} s"


def render(m: dict) -> str:
    lines = [f"backup      {m['id']}", f"created     {m['created_at']} on {m['host']}",
             f"source      {m['source']} ({m['engine']}, {m['format']})",
             f"schema      {m['schema_revision']}   erp {m['erp_version']}",
             f"snapshot    {_snapshot(m)}",
             f"size        {human_bytes(m['size_bytes'])} in {m['chunk_count']} chunks; added "
             f"{human_bytes(m['bytes_added'])}; took {m['duration_seconds']} s", "tables:"]
    lines += [f"  {t:<32}{v['rows']:>10} rows  {v['checksum']}" for t, v in sorted(m["tables"].items())]
    lines.append(f"checksums   {m.get('fingerprint_method') or 'rows'}")
    if m["invariants"] is None:
        lines.append("invariants: not checked at capture time (verification L3 checks them on the restored copy)")
    elif m["invariants"]:
        lines.append(f"invariants: {len(m['invariants'])} violation(s) at capture time:")
        lines += [f"  [{v['check']}] {v['detail']}" for v in m["invariants"]]
    else:
        lines.append("invariants: clean at capture time")
    return "\n".join(lines)


@click.command()
@click.argument("backup_id", metavar="ID")
@click.option("--chunks", "with_chunks", is_flag=True, help="Include the ordered chunk ids (JSON).")
@repo_options
@target_options
@json_option
def show(backup_id, with_chunks, repo, key_file, lock_wait, data_dir, database_url):
    """Show a backup's manifest. ID may be a unique prefix, or 'latest'."""
    t = target(data_dir, database_url)
    repository = open_repo(t, repo, key_file, lock_wait)
    manifest = repository.load_manifest(backup_id)
    result = manifest.as_dict() if with_chunks else {**manifest.summary(), "chunk_list": manifest.chunk_list}
    result["repository"] = repository.url
    emit(result, render(result))
