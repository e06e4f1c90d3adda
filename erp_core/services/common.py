"""Helpers every service uses: loading by id, numbering, state transitions."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload, undefer_group

from ..errors import InvalidTransition, NotFound, ValidationFailed
from ..models import DocSequence, User
from ..models.base import ADDED_IN_1_1


def full(model) -> list:
    """Loader options for a document with its release 1.1 columns, and its lines and payments with
    theirs, in one query per collection (those columns are deferred, see models.base.ADDED_IN_1_1)."""
    options = [undefer_group(ADDED_IN_1_1)]
    for name in ("lines", "payments"):
        rel = getattr(model, name, None)
        if rel is not None:
            options.append(selectinload(rel).undefer_group(ADDED_IN_1_1))
    return options


def user_named(s: Session, username: str) -> User:
    """The user of that name; NotFound naming it otherwise."""
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"there is no user {username!r}.",
                       fix="Check the username ('erpctl erp user list'), or create the user first.")
    return user


def get_or_404(s: Session, model, ident, what: str | None = None, *, lock: bool = False, options=()):
    stmt = select(model).where(model.__mapper__.primary_key[0] == ident).options(*options)
    if lock:
        stmt = stmt.with_for_update()
    obj = s.execute(stmt).scalar_one_or_none()
    if obj is None:
        name = what or model.__name__
        raise NotFound(f"{name} {ident} does not exist.", fix=f"Use the id of an existing {name}.")
    return obj


def known(s: Session, model, ident, field: str, what: str):
    """A row a request body refers to (by `field`): a 422 naming the field when there is none (the
    request is wrong, not the URL)."""
    obj = s.get(model, ident)
    if obj is None:
        raise ValidationFailed(f"{what} {ident} does not exist", field=field, fix=f"Use the id of an existing {what}.")
    return obj


def next_number(s: Session, series: str, width: int = 6) -> str:
    """The next gapless number of a series, e.g. SO000042. The series' row stays locked until the
    transaction ends (that serialises its writers and keeps the numbers gapless: a rolled-back number is
    taken again), so a service takes it as late as it can, once the document is checked and built."""
    bump = (update(DocSequence).where(DocSequence.name == series)
            .values(last=DocSequence.last + 1).returning(DocSequence.last))
    row = s.execute(bump).scalar_one_or_none()
    if row is None:  # first use of the series; concurrent first uses wait on the same key
        insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        s.execute(insert(DocSequence).values(name=series, last=0).on_conflict_do_nothing())
        row = s.execute(bump).scalar_one()
    return f"{series}{row:0{width}d}"


def transition(machine, doc, action: str) -> None:
    """Move a document through its state machine or raise a 409 naming the allowed actions."""
    try:
        doc.state = machine.next_state(doc.state, action)
    except ValueError as exc:
        raise InvalidTransition(str(exc), fix="Check the document's state before acting on it.",
                                state=doc.state) from None


def step(s: Session, doc, machine, action: str):
    """A transition with nothing else to do (confirm, cancel)."""
    transition(machine, doc, action)
    s.flush()
    return doc
