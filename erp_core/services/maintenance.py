"""The maintenance switch: while on, the ERP serves reads and refuses writes with 503."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from ..models import SystemSetting

KEY = "maintenance"


def state(s: Session) -> dict:
    row = s.get(SystemSetting, KEY)
    data = json.loads(row.value) if row else {}
    return {"enabled": bool(data.get("enabled")), "reason": data.get("reason", "")}


def set_state(s: Session, enabled: bool, reason: str = "") -> dict:
    row = s.get(SystemSetting, KEY)
    value = json.dumps({"enabled": enabled, "reason": reason})
    if row is None:
        s.add(SystemSetting(key=KEY, value=value))
    else:
        row.value = value
    s.flush()
    return state(s)
