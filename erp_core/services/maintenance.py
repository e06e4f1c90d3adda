"""The maintenance switch: while on, the ERP serves reads and refuses writes with 503."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from ..models import SystemSetting
from ..stored import MAINTENANCE_KEY as KEY, maintenance_from_value


def state(s: Session) -> dict:
    row = s.get(SystemSetting, KEY)
    return maintenance_from_value(row.value if row else None)


def set_state(s: Session, enabled: bool, reason: str = "") -> dict:
    row = s.get(SystemSetting, KEY)
    value = json.dumps({"enabled": enabled, "reason": reason})
    if row is None:
        s.add(SystemSetting(key=KEY, value=value))
    else:
        row.value = value
    s.flush()
    return state(s)
