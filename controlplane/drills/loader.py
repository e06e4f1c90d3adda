"""Read a drill's record (<data dir>/drills/<ID>/record.json, version 1) as plain JSON: what the reports,
sign-off, findings and the list need. Unknown keys are kept as they are."""

from __future__ import annotations

import json
import re

from .. import layout
from ..errors import DataDirProblem, DrillNotFound

DRILL_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9][A-Za-z0-9._-]*$")


def load_record(data_dir, drill_id: str) -> dict:
    """The record of drill `drill_id`, or DrillNotFound / DataDirProblem naming the file and the fix."""
    if not DRILL_ID.match(drill_id or ""):
        raise DrillNotFound(f"{drill_id!r} is not a drill id (<yyyymmddThhmmssZ>-<scenario>)",
                            fix="Copy the id from 'erpctl drill list'.", field="id")
    path = layout.path(data_dir, "drill_record", id=drill_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DrillNotFound(f"no drill {drill_id} in {data_dir} ({path} does not exist)",
                            fix="Copy the id from 'erpctl drill list' (and check --data-dir).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataDirProblem(f"the record of drill {drill_id} cannot be read: {path}: {exc}",
                             fix="Restore the file from a backup of the data directory; its sha256 is in the "
                                 "evidence log.") from None
    if not isinstance(record, dict) or record.get("version") != 1 or record.get("id") != drill_id:
        raise DataDirProblem(f"{path} is not a version 1 record of drill {drill_id}",
                             fix="Use an erpctl that reads this record's version, or restore the file from a "
                                 "backup of the data directory.")
    return record
