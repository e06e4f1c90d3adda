"""Declarative base, column types shared by all models."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import DateTime, MetaData, Numeric, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

from ..domain import search

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


Money = Numeric(18, 2, asdecimal=True)
Qty = Numeric(18, 3, asdecimal=True)
UnitCost = Numeric(18, 4, asdecimal=True)
Percent = Numeric(5, 2, asdecimal=True)
Rate = Numeric(18, 6, asdecimal=True)  # exchange rates: company units per one document unit
CurrencyCode = String(3)

# Columns added by release 1.1 (currencies, lots) are deferred in this group: a 1.1 process can still
# read and count the 1.0 columns of a database that is not yet expanded (the control plane looks at a
# 1.0 database before upgrading it). The services load the group with the rows that need it
# (services.common.full), so no row costs an extra query.
ADDED_IN_1_1 = "added_in_1_1"


def added_in_1_1(*args, **kw):
    """A mapped column added by release 1.1: deferred in the ADDED_IN_1_1 group."""
    from sqlalchemy.orm import mapped_column

    return mapped_column(*args, deferred=True, deferred_group=ADDED_IN_1_1, **kw)


# Columns added by release 1.1's later expand steps (0006: stock value, search keys, service users; 0007:
# the user's language): deferred in their own group for the same reason.
ADDED_LATER_IN_1_1 = "added_later_in_1_1"


def added_later_in_1_1(*args, **kw):
    """A mapped column added by migration 0006 or 0007: deferred in the ADDED_LATER_IN_1_1 group."""
    from sqlalchemy.orm import mapped_column

    return mapped_column(*args, deferred=True, deferred_group=ADDED_LATER_IN_1_1, **kw)


def search_key_of(*columns: str):
    """A column default: the search key (domain.search.key) of the values being inserted into `columns`;
    an ORM update keeps it current through keep_search_keys (models/__init__.py)."""
    def default(context):
        values = context.get_current_parameters()
        return search.key(*(values.get(c) for c in columns))

    return default


def same_as(column: str):
    """A column default: the value being inserted into `column` (a document in company currency has
    the same amounts in both columns)."""

    def default(context):
        return context.get_current_parameters().get(column)

    return default


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(dt.timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Encrypted(TypeDecorator):
    """A string stored encrypted (AES-256-GCM) with the configured field key, bound to its row: sealed by
    the row's before_insert/before_update event and opened by its load/refresh event (models/sealing.py)."""

    impl = String(512)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        from .sealing import Sealed

        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.stored
        raise TypeError("an encrypted column is written through the ORM only (its row id is part of its "
                        "encryption: erp_core/models/sealing.py)")

    def process_result_value(self, value, dialect):
        from .sealing import Unopened

        return None if value is None else Unopened(value)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


__all__ = ["Base", "Money", "Qty", "UnitCost", "Percent", "Rate", "CurrencyCode", "ADDED_IN_1_1", "added_in_1_1", "ADDED_LATER_IN_1_1", "added_later_in_1_1", "search_key_of",
           "same_as", "UTCDateTime", "Encrypted", "utcnow", "Decimal"]
