"""Web pages for business users: server-rendered (Jinja), no JavaScript, calling the same services
as the REST API with the same permission strings. The blueprint `web` is registered by create_app."""

from . import finance_pages, home, purchase_pages, sales_pages, stock_pages  # noqa: F401 - registers the pages
from .framework import web

__all__ = ["web"]
