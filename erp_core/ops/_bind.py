"""A session on whatever the caller holds: a Session, a Connection (its transaction) or an Engine."""

from __future__ import annotations

import contextlib

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
