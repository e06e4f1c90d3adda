"""Web pages for business users: server-rendered (Jinja), calling the same services as the REST API
with the same permission strings. Every page works without JavaScript; the order forms' pickers and
live totals add a little (inline, with the page's CSP nonce, no third-party script). The blueprint
`web` is registered by create_app."""

from . import (account_pages, bank_pages, credentials_pages, finance_pages, home, ledger_pages,  # noqa: F401
               masterdata_pages, mfa_pages, pdf_pages, picker_pages, print_pages, purchase_pages, return_pages,
               sales_pages, stock_pages, user_pages, warehouse_pages)
from .framework import web

__all__ = ["web"]
