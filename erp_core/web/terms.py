"""Words that come from the data and are shown on the pages: document states, stock move kinds,
account types and the shipped chart of accounts, payment methods, roles. `term(value)` shows the
value in the page's language; a value not listed here (an account a company added) is shown as stored."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..services.reports import RETAINED_EARNINGS

TERMS = {
    # document states
    "draft": _l("draft"), "confirmed": _l("confirmed"), "delivered": _l("delivered"),
    "invoiced": _l("invoiced"), "paid": _l("paid"), "cancelled": _l("cancelled"),
    "received": _l("received"), "billed": _l("billed"), "open": _l("open"), "partial": _l("partial"),
    "posted": _l("posted"), "pending": _l("pending"), "approved": _l("approved"), "rejected": _l("rejected"),
    # stock move kinds
    "receipt": _l("receipt"), "delivery": _l("delivery"), "transfer": _l("transfer"),
    "adjustment": _l("adjustment"),
    # account types
    "asset": _l("asset"), "liability": _l("liability"), "equity": _l("equity"), "income": _l("income"),
    "expense": _l("expense"),
    # payment methods
    "bank": _l("bank transfer"), "cash": _l("cash"), "card": _l("card"),
    # roles
    "admin": _l("administrator"), "sales": _l("sales"), "purchasing": _l("purchasing"),
    "warehouse": _l("warehouse"), "finance": _l("finance"), "auditor": _l("auditor"),
    # the shipped chart of accounts
    "Bank": _l("Bank"), "Accounts receivable": _l("Accounts receivable"), "Inventory": _l("Inventory"),
    "Accounts payable": _l("Accounts payable"), "VAT input": _l("VAT input"), "VAT output": _l("VAT output"),
    "Goods received not billed": _l("Goods received not billed"), "Owner's capital": _l("Owner's capital"),
    "Sales revenue": _l("Sales revenue"), "Cost of goods sold": _l("Cost of goods sold"),
    "Stock adjustments (count gains and losses)": _l("Stock adjustments (count gains and losses)"),
    "Purchase price differences": _l("Purchase price differences"),
    RETAINED_EARNINGS: _l("Retained earnings (profit to date)"),
    # titles of errors (erp_core.errors and HTTP)
    "Bad request": _l("Bad request"), "Invalid input": _l("Invalid input"),
    "Authentication required": _l("Authentication required"), "Permission denied": _l("Permission denied"),
    "Not found": _l("Not found"), "Conflict": _l("Conflict"), "Insufficient stock": _l("Insufficient stock"),
    "Invalid state transition": _l("Invalid state transition"),
    "Maintenance mode required": _l("Maintenance mode required"), "Too many requests": _l("Too many requests"),
    "Maintenance in progress": _l("Maintenance in progress"), "Schema not supported": _l("Schema not supported"),
    "Stored value does not decrypt": _l("Stored value does not decrypt"),
    "Bad Request": _l("Bad request"), "Not Found": _l("Not found"), "Method Not Allowed": _l("Method not allowed"),
    "Request Entity Too Large": _l("Request too large"), "Forbidden": _l("Permission denied"),
}


def term(value) -> str:
    if value is None:
        return ""
    known = TERMS.get(value)
    return str(known) if known is not None else str(value)
