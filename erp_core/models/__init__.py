"""SQLAlchemy models. The schema itself is built only by the Alembic migrations."""

from .accounting import Account, Invoice, JournalEntry, JournalLine, Payment
from .base import Base
from .catalog import PriceList, PriceListItem, Product, TaxRate
from .identity import (ApiToken, AuditLog, DocSequence, IdempotencyRecord, LoginAttempt, Role, SchemaMigration,
                       SystemSetting, User)
from .orders import PurchaseOrder, PurchaseOrderLine, SalesOrder, SalesOrderLine
from .partners import Partner
from .stock import Lot, ReorderRule, StockLevel, StockMove, Stocktake, StocktakeLine, Warehouse

__all__ = [n for n in dir() if n[0].isupper()]
