"""The maintenance switch: while on, the ERP serves reads and refuses writes with 503.

A refusal carries Retry-After: the seconds left until `until` (unix seconds: when whoever switched it
on expects to be done, e.g. an upgrade's estimate of its read-only time), at least 1; else the
`retry_after` seconds it was switched on with; else DEFAULT_RETRY_AFTER_SECONDS.
"""

from __future__ import annotations

import json
import math
import time

from sqlalchemy.orm import Session

from ..models import SystemSetting
from ..stored import MAINTENANCE_KEY as KEY, maintenance_from_value

DEFAULT_RETRY_AFTER_SECONDS = 60


def state(s: Session) -> dict:
    row = s.get(SystemSetting, KEY)
    return maintenance_from_value(row.value if row else None)


def set_state(s: Session, enabled: bool, reason: str = "", *, retry_after: int | None = None,
              until: float | None = None) -> dict:
    row = s.get(SystemSetting, KEY)
    when = {"retry_after": retry_after, "until": until} if enabled else {}
    value = json.dumps({"enabled": enabled, "reason": reason, **{k: v for k, v in when.items() if v is not None}})
    if row is None:
        s.add(SystemSetting(key=KEY, value=value))
    else:
        row.value = value
    s.flush()
    return state(s)


def retry_after(mode: dict, now: float | None = None) -> int:
    """The Retry-After seconds of a refusal while `mode` is on."""
    if mode.get("until") is not None:
        return max(1, math.ceil(float(mode["until"]) - (time.time() if now is None else now)))
    return max(1, int(mode.get("retry_after") or DEFAULT_RETRY_AFTER_SECONDS))
