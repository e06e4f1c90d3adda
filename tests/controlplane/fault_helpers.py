"""Random kill schedules print their seed, so a schedule that found a bug can be run again."""

from __future__ import annotations

import os
import random

SEED_ENV = "ERPCTL_FAULT_SEED"


def seeded_rng(default: int | None = None) -> random.Random:
    """A Random seeded from ERPCTL_FAULT_SEED, else `default`, else a fresh seed; the seed is printed
    (pytest shows it beside a failing test)."""
    seed = int(os.environ.get(SEED_ENV) or 0) or default or random.SystemRandom().randrange(1, 2 ** 31)
    print(f"random kill schedule: seed {seed} (run it again with {SEED_ENV}={seed})")
    return random.Random(seed)
