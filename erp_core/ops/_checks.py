"""The business invariants (erp_core.invariants) and the field encryption key they may need."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import crypto, invariants
from ._bind import session_on

__all__ = ["InvariantsResult", "check_invariants", "invariant_checks", "load_field_key", "field_key"]

field_key = crypto.key_loaded  # `with field_key(key):` the key set for the block, the previous one after


def load_field_key(key: str | bytes) -> None:
    """Set the field key for the rest of the process (a process that serves the ERP or seeds it)."""
    crypto.configure(key)


def invariant_checks() -> list[str]:
    """The names of the checks check_invariants runs, in order."""
    return [c.__name__ for c in invariants.CHECKS]


@dataclass
class InvariantsResult:
    """What check_invariants found: `violations` ({"check", "detail", "ref"} each) is empty when the
    business data is consistent."""

    violations: list[dict] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": self.checks, "seconds": self.seconds, "violations": self.violations}


def check_invariants(bind) -> InvariantsResult:
    """Run every check on a Session, a Connection (in its transaction) or an Engine."""
    t0 = time.perf_counter()
    with session_on(bind) as s:
        found = [v.as_dict() for v in invariants.check_all(s)]
    return InvariantsResult(found, invariant_checks(), round(time.perf_counter() - t0, 3))
