"""A session on whatever the caller holds: a Session, a Connection (its transaction) or an Engine."""

from __future__ import annotations

import contextlib

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session


@contextlib.contextmanager
def session_on(bind):
    """The caller's Session as it is; otherwise a Session bound to the Connection or Engine, closed
    afterwards without committing (these reads write nothing)."""
    if isinstance(bind, Session):
        yield bind
        return
    with Session(bind=bind) as s:
        yield s


def one_snapshot(bind):
    """An Engine made to read from one snapshot per transaction on PostgreSQL (REPEATABLE READ): under
    its default READ COMMITTED each statement sees the writes committed before it, so checks that compare
    two tables in two statements would see a write land between them. A Session or Connection is
    returned as it is (its transaction is the caller's), and so is SQLite (a read transaction is one
    snapshot already)."""
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        return bind.execution_options(isolation_level="REPEATABLE READ")
    return bind
