"""SQLAlchemy models. The schema itself is built only by the Alembic migrations."""

from sqlalchemy import event, inspect

from ..domain import search

from .accounting import Account, Invoice, JournalEntry, JournalLine, LedgerPeriodBalance, Payment
from .base import Base
from .catalog import PriceList, PriceListItem, Product, TaxRate
from .identity import (ApiToken, AuditLog, DocSequence, IdempotencyRecord, LoginAttempt, LoginThrottle, Role, SchemaMigration,
                       SystemSetting, User)
from .mfa import MfaChallenge, RecoveryCode, UserMfa
from .orders import PurchaseOrder, PurchaseOrderLine, SalesOrder, SalesOrderLine
from .partners import BankDetailChange, Partner
from .returns import CreditNote, Return, ReturnLine
from .stock import Lot, ReorderRule, StockLevel, StockMove, Stocktake, StocktakeLine, Warehouse

SEARCHED = {Product: ("sku", "name"), Partner: ("code", "name")}


def keep_search_keys(_mapper, _connection, target) -> None:
    """An ORM update of a searched column refreshes the row's search key (inserts: search_key_of)."""
    columns = SEARCHED[type(target)]
    state = inspect(target)
    if any(state.attrs[c].history.has_changes() for c in columns):
        target.search_text = search.key(*(getattr(target, c) for c in columns))


for _model in SEARCHED:
    event.listen(_model, "before_update", keep_search_keys)

from . import sealing  # noqa: E402 - after the models: it reads them

sealing.install(Base)

__all__ = [n for n in dir() if n[0].isupper()]
