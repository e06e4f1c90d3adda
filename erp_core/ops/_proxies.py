"""The reverse proxies the ERP trusts, as the installation's setting names them (erp_core.proxies)."""

from __future__ import annotations

from ..proxies import parse_networks

__all__ = ["parse_networks"]
