"""erpctl field-key reveal: an audit log entry's encrypted values in clear, for an auditor."""

from __future__ import annotations

import click

from .. import fieldkeys
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    e = r["entry"]
    lines = [f"audit entry {e['id']}: {e['action']} {e['entity']} {e['entity_id']} by {e['actor']} at {e['at']}"]
    for column, v in sorted(r["values"].items()):
        lines.append(f"  {column}: {v['before']!r} -> {v['after']!r}")
    return "\n".join(lines)


@click.command()
@click.argument("entry_id", type=click.IntRange(1, 2**63 - 1), metavar="ENTRY_ID")
@target_options
@json_option
def reveal(entry_id, data_dir, database_url):
    """Show an audit log entry's encrypted values (old and new bank account) in clear, for an auditor; the
    reveal is audited.

    ENTRY_ID is the entry's id (the API's /audit-log lists them).
    The audit log keeps encrypted fields encrypted, bound to the entry's row, column and side; this decrypts
    them with the field key in use. The reveal is recorded in the ERP's audit log (entity audit_reveal) and the
    evidence log (field_key.reveal), never the values. Exit 122: no such entry; 123: it holds no encrypted
    value; 120: a value does not decrypt there (moved or altered)."""
    result = fieldkeys.reveal(target(data_dir, database_url), entry_id)
    emit(result, render(result))
