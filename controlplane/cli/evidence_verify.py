"""erpctl evidence verify: check the evidence log's hash chain offline."""

from __future__ import annotations

import click

from ..errors import EvidenceTampered
from ..evidence import EvidenceLog
from .options import emit, json_option, target, target_options


def _interrupted(crash: dict | None) -> list[str]:
    if crash is None:
        return []
    what = ("is complete in the log and counted" if crash["written"]
            else "was never written (its torn end, if any, is not counted)")
    return [f"  an append was interrupted: record {crash['seq']} ({crash['kind']}) {what}; the next command "
            "that records evidence completes it and records the repair (evidence.repair)"]


def render(r: dict) -> str:
    if r["ok"]:
        if not r["records"]:
            return "\n".join([f"ok: no evidence recorded yet in {r['path']}", *_interrupted(r["interrupted"])])
        return "\n".join([f"ok: {r['records']} record(s), chain intact from record 1 to {r['records']} "
                          f"({r['path']})", *_interrupted(r["interrupted"])])
    first = r["first_problem"]
    lines = [f"NOT INTACT: {first['detail']}",
             f"  first bad record: {first['seq']} ({first['kind']}), line {first['line']} of {r['path']}"]
    if r["intact_through"]:
        lines.append(f"  the first {r['intact_through']} record(s) are intact")
    return "\n".join(lines)


@click.command()
@click.option("--log", "log_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="The directory holding evidence.jsonl and evidence.head (default: the data directory).")
@target_options
@json_option
def verify(log_dir, data_dir, database_url):
    """Check every record of the evidence log, offline: each record's hash, its link to the one before,
    the sequence numbers and the head. Names the first record that was altered, removed or reordered.
    An append killed before it finished is not an alteration: it is named, and the next command that
    records evidence completes it and records the repair.

    Exit 0 when the chain is intact, 15 when it is not.
    """
    directory = log_dir or target(data_dir, database_url).data_dir
    log = EvidenceLog(directory)
    count, problems = log.verify()
    crash = log.interrupted()
    first = problems[0].as_dict() if problems else None
    intact = count  # the records before the first bad line are intact
    if first is not None and first["kind"] != "truncated":
        intact = max(0, first["line"] - 1)
    result = {"ok": not problems, "path": str(log.path), "records": count, "intact_through": intact,
              "first_problem": first, "problems": [p.as_dict() for p in problems],
              "interrupted": crash.as_dict() if crash else None}
    emit(result, render(result))
    if problems:
        raise EvidenceTampered(f"the evidence log is not intact: {first['detail']}",
                               fix="Keep this copy for the audit; compare it with a backup of the data directory "
                                   "to see what was changed.", first_problem=first)
