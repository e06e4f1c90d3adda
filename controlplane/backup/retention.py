"""Retention: which backups a keep-last/daily/weekly/monthly policy keeps (restic's rules).

Backups are taken newest first. keep_last keeps the N newest; keep_daily keeps the newest backup
of each of the N most recent days that have one (weekly: ISO weeks, monthly: calendar months).
A backup is kept when any rule keeps it. Days are UTC days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from erp_core.errors import ValidationFailed

from ..errors import SettingInvalid


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value < 0:
                raise ValidationFailed(f"{name} must not be negative", field=name)

    def empty(self) -> bool:
        return not any(asdict(self).values())

    def as_dict(self) -> dict:
        return asdict(self)


def configured(installation) -> RetentionPolicy | None:
    """The installation's policy: [backup.retention] of erpctl.toml (None when it keeps nothing)."""
    table = installation.section("backup.retention")
    unknown = sorted(set(table) - set(RetentionPolicy.__dataclass_fields__))
    try:
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        policy = RetentionPolicy(**{k: int(v) for k, v in table.items()})
    except (TypeError, ValueError, ValidationFailed) as exc:
        raise SettingInvalid(f"[backup.retention] in erpctl.toml is not a retention policy: {exc}",
                             fix="Use keep_last, keep_daily, keep_weekly and keep_monthly with whole numbers "
                                 "of at least 0.") from None
    return None if policy.empty() else policy


def _when(manifest) -> dt.datetime:
    return dt.datetime.fromisoformat(manifest.created_at).astimezone(dt.UTC)


BUCKETS = {
    "keep_daily": lambda t: t.date().isoformat(),
    "keep_weekly": lambda t: "%04d-W%02d" % t.isocalendar()[:2],
    "keep_monthly": lambda t: f"{t.year:04d}-{t.month:02d}",
}


def select(manifests: list, policy: RetentionPolicy) -> tuple[list, list, dict[str, list[str]]]:
    """(keep, forget, reasons {backup id: [rule, ...]}); keep and forget are newest first."""
    if policy.empty():
        raise ValidationFailed("the retention policy keeps nothing",
                               fix="Give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly.")
    newest_first = sorted(manifests, key=lambda m: (_when(m), m.id), reverse=True)
    reasons: dict[str, list[str]] = {}
    for m in newest_first[:policy.keep_last]:
        reasons.setdefault(m.id, []).append("last")
    for rule, bucket_of in BUCKETS.items():
        n = getattr(policy, rule)
        seen: list[str] = []
        for m in newest_first:
            if len(seen) >= n:
                break
            b = bucket_of(_when(m))
            if b not in seen:
                seen.append(b)
                reasons.setdefault(m.id, []).append(f"{rule.removeprefix('keep_')} {b}")
    keep = [m for m in newest_first if m.id in reasons]
    forget = [m for m in newest_first if m.id not in reasons]
    return keep, forget, reasons
