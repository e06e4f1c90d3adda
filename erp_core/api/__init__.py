"""The REST API under /api/v1: importing this package registers every operation."""

from . import finance, imports, masterdata, orders, stock, system, users  # noqa: F401
from .framework import OPERATIONS, api  # noqa: F401
