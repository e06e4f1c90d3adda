"""The REST API under /api/v1: importing this package registers every operation."""

from . import account, bankdetails, finance, imports, masterdata, mfa, orders, returns, stock, system, users  # noqa: F401
from .framework import OPERATIONS, api  # noqa: F401
