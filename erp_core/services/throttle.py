"""Login throttling that an unauthenticated client cannot turn against a user.

Three counters of failed logins, each a row of login_throttle:

- ``p:<account>\\n<address>`` — one account from one client address: after ``free`` failures (the
  setting login_max_failures, 5) each further attempt waits 2, 4, 8 ... seconds, at most ``cap``
  (login_window_seconds, 900);
- ``a:<address>`` — one client address, any account: the same back-off after 4 × ``free`` failures
  (one address spraying many usernames);
- ``u:<account>`` — one account, any address: after 4 × ``free`` failures the account is under attack
  and an address that already failed ``ALLOWANCE`` times on it waits the account's back-off; an address
  with fewer failures on it (the real user's) is not held back. The attacker's failures therefore
  cost the real user, at another address, nothing but the ALLOWANCE of typing mistakes.

Every attempt (a password, or a one-time code of multi-factor login) is charged *before* it is checked,
in its own committed transaction that locks the three rows (in key order: no deadlock) — on PostgreSQL
``SELECT ... FOR UPDATE``, on SQLite the write transaction's lock — so parallel guesses queue on the
rows and never check more than the counters allow. A right password or code refunds its own charge;
a completed login also clears the account-and-address counter. Counters idle for FORGET are forgotten.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..errors import TooManyRequests
from ..models import LoginThrottle
from ..models.base import utcnow

ALLOWANCE = 2  # failures an address may add to an account under attack before it waits too
SPREAD = 4  # an address, or an account, may fail SPREAD times as often as one pair before back-off
FORGET = dt.timedelta(days=1)
CHANGE_FREE, CHANGE_CAP = 5, 900  # wrong current passwords in a password change (services.passwords)


@dataclass(frozen=True)
class Ticket:
    """The keys charged for one login attempt."""
    pair: str
    address: str
    account: str


def keys(username: str, remote_addr: str) -> Ticket:
    addr = (remote_addr or "-")[:64]
    name = username[:64]
    return Ticket(f"p:{name}\n{addr}", f"a:{addr}", f"u:{name}")


def backoff(failures: int, free: int, cap: int) -> int:
    """Seconds to wait after `failures` failures when `free` are allowed: 0, then 2, 4, 8 ... at most cap."""
    if failures < free:
        return 0
    return min(cap, 2 ** min(failures - free + 1, 30))


def _rows(s: Session, ticket: Ticket) -> dict[str, LoginThrottle]:
    """The ticket's three rows, created if missing, locked in key order."""
    names = sorted({ticket.pair, ticket.address, ticket.account})
    now = utcnow()
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    s.execute(insert(LoginThrottle).values([{"key": k, "failures": 0, "updated_at": now} for k in names])
              .on_conflict_do_nothing(index_elements=["key"]))
    rows = s.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(names)).order_by(LoginThrottle.key)
                     .with_for_update().execution_options(populate_existing=True)).all()
    return {r.key: r for r in rows}


def _wait(row: LoginThrottle, threshold: int, now: dt.datetime) -> int:
    """Seconds this row still holds an attempt back (0: none)."""
    if row.failures < threshold or row.blocked_until is None or row.blocked_until <= now:
        return 0
    return max(1, math.ceil((row.blocked_until - now).total_seconds()))


def admit(s: Session, username: str, remote_addr: str, *, free: int, cap: int) -> Ticket:
    """Charge one attempt, committed before the password is checked; TooManyRequests (429, Retry-After)
    when a counter holds the attempt back (nothing charged then)."""
    ticket = keys(username, remote_addr)
    now = utcnow()
    rows = _rows(s, ticket)
    for row in rows.values():
        if row.updated_at < now - FORGET:
            row.failures, row.blocked_until = 0, None
    pair, address, account = rows[ticket.pair], rows[ticket.address], rows[ticket.account]
    wait = max(_wait(pair, free, now), _wait(address, SPREAD * free, now),
               _wait(account, SPREAD * free, now) if pair.failures >= ALLOWANCE else 0)
    if wait:
        s.commit()
        raise TooManyRequests(
            f"too many failed logins for {username!r} from this address.",
            fix=f"Wait {wait} seconds and try again (each further failure doubles the wait, up to {cap // 60} "
                "minutes). Forgot the password? An administrator can reset it; from another device the "
                "correct password is not held back.", headers={"Retry-After": str(wait)})
    for row, threshold in ((pair, free), (address, SPREAD * free), (account, SPREAD * free)):
        row.failures += 1
        row.updated_at = now
        delay = backoff(row.failures, threshold, cap)
        if delay:
            row.blocked_until = now + dt.timedelta(seconds=delay)
    s.commit()
    return ticket


def refund(s: Session, ticket: Ticket) -> None:
    """A right password or code: its own charge is taken back (each counter one less). The failures
    before it stay: a right password does not wipe out the wrong codes that followed an earlier one."""
    for row in _rows(s, ticket).values():
        row.failures = max(0, row.failures - 1)


def forgive(s: Session, ticket: Ticket) -> None:
    """A login completed (password and any second factor): the account-and-address counter starts again
    from zero. Counters idle for FORGET are deleted."""
    pair = _rows(s, ticket)[ticket.pair]
    pair.failures, pair.blocked_until = 0, None
    s.execute(delete(LoginThrottle).where(LoginThrottle.updated_at < utcnow() - FORGET))


def state(s: Session, username: str, remote_addr: str) -> dict[str, int]:
    """The counters of an account and address (for tests and operators): {"pair", "address", "account"}."""
    t = keys(username, remote_addr)
    found = dict(s.execute(select(LoginThrottle.key, LoginThrottle.failures)
                           .where(LoginThrottle.key.in_([t.pair, t.address, t.account]))).all())
    return {"pair": found.get(t.pair, 0), "address": found.get(t.address, 0), "account": found.get(t.account, 0)}
