"""erpctl evidence check-file: is this file (a drill report, an artifact) the one the evidence log attests?"""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from ..errors import EvidenceFileUnattested, EvidenceTampered
from ..evidence import EvidenceLog, attestations, attested_file
from .options import emit, json_option, target, target_options


def _brief(rec: dict) -> dict:
    return {"seq": rec["seq"], "kind": rec["kind"], "at": rec["at"], "actor": rec.get("actor"),
            "file": attested_file(rec)}


def render(r: dict) -> str:
    if r["ok"]:
        m = r["match"]
        return (f"ok: {r['file']} is unchanged: sha256 {r['sha256']} is attested by record {m['seq']} "
                f"({m['kind']}, {m['at']}, by {m['actor']}); the chain is intact")
    lines = [f"NOT ATTESTED: no record attests {r['file']} as it is (sha256 {r['sha256']})"]
    for rec in r["same_name"]:
        lines.append(f"  record {rec['seq']} ({rec['kind']}, {rec['at']}) attests a file of that name with sha256 "
                     f"{rec['file']['sha256']}: the file was changed since")
    return "\n".join(lines)


@click.command(name="check-file")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--log", "log_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="The directory holding the evidence log (default: the data directory).")
@target_options
@json_option
def check_file(file, log_dir, data_dir, database_url):
    """Say whether FILE (a drill report, an artifact) is exactly a file an evidence record attests,
    naming the record. The chain and signatures are checked first.

    Exit 0 when it matches, 19 when no record attests it as it is, 15 when the log is not intact.
    """
    log = EvidenceLog(log_dir or target(data_dir, database_url).data_dir)
    count, problems = log.verify()
    if problems:
        raise EvidenceTampered(f"the evidence log is not intact: {problems[0].detail}",
                               fix="Run 'erpctl evidence verify' to see what was changed.",
                               first_problem=problems[0].as_dict())
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    records = log.records()
    matches = attestations(records, sha256=digest)
    result = {"ok": bool(matches), "file": str(file), "sha256": digest,
              "match": _brief(matches[-1]) if matches else None,
              "same_name": [_brief(r) for r in attestations(records, name=file.name)] if not matches else []}
    emit(result, render(result))
    if not matches:
        raise EvidenceFileUnattested(f"no evidence record attests {file} as it is",
                                     fix="Compare it with the copy the record names; a report is attested when it is "
                                         "published, so a changed one was altered afterwards.")
