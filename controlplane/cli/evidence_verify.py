"""erpctl evidence verify: check the evidence log's hash chain, signatures and anchors offline."""

from __future__ import annotations

from pathlib import Path

import click

from .. import evidence_anchor, evidence_keys
from ..errors import EvidenceKeyRefused, EvidenceTampered, RepositoryNotInitialised
from ..evidence import EvidenceLog
from .options import emit, json_option, target, target_options


def _interrupted(crash: dict | None) -> list[str]:
    if crash is None:
        return []
    what = ("is complete in the log and counted" if crash["written"]
            else "was never written (its torn end, if any, is not counted)")
    return [f"  an append was interrupted: record {crash['seq']} ({crash['kind']}) {what}; the next command "
            "that records evidence completes it and records the repair (evidence.repair)"]


def _signatures(r: dict) -> list[str]:
    if not r["records"]:
        return []
    keys = ", ".join(r["keys"]) or "-"
    if r["unsigned_through"] and r["signed"]:
        return [f"  unsigned up to record {r['unsigned_through']} (written before records were signed); "
                f"records {r['unsigned_through'] + 1} to {r['records']} signed (key {keys})"]
    if r["unsigned_through"]:
        return [f"  unsigned up to record {r['unsigned_through']} (written before records were signed)"]
    return [f"  every record signed (key {keys})"]


def _anchors(a: dict | None) -> list[str]:
    if a is None:
        return ["  anchors not checked (--anchors checks backup manifests and the anchor store)"]
    where = "; ".join(a["sources"])
    if not a["count"]:
        return [f"  anchors: none found ({where}): a removed tail or log cannot be detected yet"]
    return [f"  anchors: {a['count']} checked ({where}); they vouch for the log up to record {a['vouched_through']}"]


def render(r: dict) -> str:
    if r["ok"]:
        if not r["records"]:
            head = f"ok: no evidence recorded yet in {r['path']}"
        else:
            head = f"ok: {r['records']} record(s), chain intact from record 1 to {r['records']} ({r['path']})"
        return "\n".join([head, *_signatures(r), *_anchors(r["anchors"]), *_interrupted(r["interrupted"])])
    first = r["first_problem"]
    lines = [f"NOT INTACT: {first['detail']}"]
    if first["kind"] == "anchor":
        lines.append(f"  first bad record: {first['seq']} (anchor): the anchor disagrees with {r['path']}")
    else:
        lines.append(f"  first bad record: {first['seq']} ({first['kind']}), line {first['line']} of {r['path']}")
    if r["intact_through"]:
        lines.append(f"  the first {r['intact_through']} record(s) are intact")
    return "\n".join(lines + [f"  also: {p['detail']}" for p in r["problems"][1:4]])


def collect_anchors(t, repo, key_file) -> tuple[list, list[str]]:
    """Every anchor of the installation: its backups' manifests and its anchor store."""
    from .backup_common import installation, open_repo  # the backup code is loaded only for --anchors

    inst = installation(t, repo, key_file)
    anchors, sources = [], []
    try:
        found = evidence_anchor.manifest_anchors(open_repo(t, repo, key_file))
        sources.append(f"{len(found)} in the backup manifests of {inst.get('backup_repo')}")
        anchors += found
    except RepositoryNotInitialised:
        sources.append(f"no backup repository at {inst.get('backup_repo')}")
    url = inst.get("evidence_anchor")
    if url:
        found = evidence_anchor.store_anchors(url, t.data_dir)
        sources.append(f"{len(found)} in the anchor store {url}")
        anchors += found
    else:
        sources.append("no anchor store (setting evidence_anchor)")
    return anchors, sources


@click.command()
@click.option("--log", "log_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="The directory holding evidence.jsonl and evidence.head (default: the data directory).")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Trust only the public key(s) in FILE ('erpctl evidence public-key' wrote it), not evidence.pub "
                   "beside the log.")
@click.option("--anchors", is_flag=True,
              help="Also check the log against its anchors: every backup's manifest and the anchor store "
                   "(setting evidence_anchor). Detects a removed tail, a removed log, a rewritten chain.")
@click.option("--repo", metavar="URL", help="The backup repository whose manifests anchor the log (default: the "
                                          "installation's). [env ERPCTL_BACKUP_REPO]")
@click.option("--key-file", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path),
              help="The backup repository's key file. [env ERPCTL_BACKUP_KEY_FILE]")
@target_options
@json_option
def verify(log_dir, public_key, anchors, repo, key_file, data_dir, database_url):
    """Check every record of the evidence log, offline: each record's hash and signature, its link to the
    one before, the sequence numbers and the head; with --anchors, the anchors too. Names the first
    record that was altered, removed or reordered, or the anchor that disagrees. Records written before
    records were signed verify as "unsigned up to record N". An append killed before it finished is not
    an alteration: it is named, and the next command that records evidence completes it.

    Exit 0 when the chain is intact, 15 when it is not, 18 when --public-key holds no key.
    """
    t = target(data_dir, database_url)
    log = EvidenceLog(log_dir or t.data_dir)
    keys = None
    if public_key is not None:
        keys = evidence_keys.read_public_keys(public_key)
        if not keys:
            raise EvidenceKeyRefused(f"{public_key} holds no Ed25519 public key",
                                     fix="Give the file 'erpctl evidence public-key --out FILE' wrote.")
    found, sources = collect_anchors(t, repo, key_file) if anchors else (None, None)
    result = evidence_anchor.verify(log, keys, found, sources)
    emit(result, render(result))
    if not result["ok"]:
        first = result["first_problem"]
        raise EvidenceTampered(f"the evidence log is not intact: {first['detail']}",
                               fix="Keep this copy for the audit; compare it with a backup of the data directory "
                                   "to see what was changed.", first_problem=first)
