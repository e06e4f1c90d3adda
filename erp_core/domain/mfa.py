"""Multi-factor login rules, pure: which users must give a second factor, what a code looks like, and
which TOTP time step a code matches (RFC 6238: 30-second steps, 6 digits, one step of clock drift)."""

from __future__ import annotations

import hmac
import re
import secrets

from .permissions import ROLES

DEFAULT_ROLES = "admin,finance"
NOBODY = ("none", "")  # the policy values that require MFA of no role
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud and typed from paper
TOTP_CODE = re.compile(r"\d{6}")
DRIFT_STEPS = 1


def parse_roles(raw: str | None) -> frozenset[str]:
    """'admin, finance' -> {'admin', 'finance'}; 'none' or '' -> nobody. ValueError naming an unknown role."""
    text = (raw if raw is not None else DEFAULT_ROLES).strip().lower()
    if text in NOBODY:
        return frozenset()
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise ValueError(f"MFA roles: unknown role(s) {', '.join(unknown)}; use a comma-separated list of "
                         f"{', '.join(ROLES)}, or 'none'")
    return roles


def required(roles: frozenset[str], role: str, service: bool) -> bool:
    """A user must give a second factor when its role is in the policy; the operators' service users
    (their tools log in unattended: the business probe) never are (docs/threat-model.md)."""
    return role in roles and not service


def normalise(code: str) -> str:
    """What the user typed, without spaces and dashes, lower case (recovery codes are shown grouped)."""
    return re.sub(r"[\s-]", "", code or "").lower()


def is_totp(code: str) -> bool:
    return bool(TOTP_CODE.fullmatch(code))


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    """n one-time codes of 10 characters (about 49 bits each), shown as xxxxx-xxxxx."""
    out = []
    for _ in range(n):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        out.append(f"{raw[:5]}-{raw[5:]}")
    return out


def matching_step(code: str, now_step: int, otp_at, last_step: int | None) -> int | None:
    """The time step (now, or one before or after) whose code is `code`, if it is later than the last
    step accepted (a code is never accepted twice); otp_at(step) gives the code of a step."""
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(otp_at(step).encode(), code.encode()):
            return step
    return None
