"""ERP settings, from arguments or the environment (ERP_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import proxies
from .domain import mfa


@dataclass
class Settings:
    database_url: str
    # Key for encrypted partner fields; a 32-byte urlsafe-base64 key or a passphrase.
    field_key: str = field(default_factory=lambda: os.environ.get("ERP_FIELD_KEY", ""))
    token_ttl_seconds: int = 8 * 3600
    # login throttling (services/throttle.py): failures of one account from one address before each further
    # attempt waits 2, 4, 8 ... seconds, at most login_window_seconds
    login_max_failures: int = 5
    login_window_seconds: int = 900
    page_size_max: int = 200
    testing: bool = False
    # When set, /metrics answers only with 'Authorization: Bearer <token>' and adds the business gauges
    # (sales orders, receivables); without it, /metrics holds no business figures.
    metrics_token: str = field(default_factory=lambda: os.environ.get("ERP_METRICS_TOKEN", ""), repr=False)
    # The roles whose users log in with a second factor (TOTP), comma-separated; "none": no role. The
    # control plane passes its installation setting `mfa_roles` (controlplane/stack.py).
    mfa_roles: str | frozenset = field(default_factory=lambda: os.environ.get("ERP_MFA_ROLES", mfa.DEFAULT_ROLES))
    # The reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the client
    # (erp_core/proxies.py); none by default. The control plane passes its setting `trusted_proxies`.
    trusted_proxies: str | tuple = field(default_factory=lambda: os.environ.get("ERP_TRUSTED_PROXIES", ""))
    # The company as its printed documents name it (the seller of an invoice, the sender of a quotation
    # or delivery slip): name, taxpayer id, address and phone, bank and account (ERP_COMPANY_*).
    company_name: str = field(default_factory=lambda: os.environ.get("ERP_COMPANY_NAME", ""))
    company_tax_id: str = field(default_factory=lambda: os.environ.get("ERP_COMPANY_TAX_ID", ""))
    company_address: str = field(default_factory=lambda: os.environ.get("ERP_COMPANY_ADDRESS", ""))
    company_bank_account: str = field(default_factory=lambda: os.environ.get("ERP_COMPANY_BANK_ACCOUNT", ""))

    def __post_init__(self):
        if not self.field_key:
            raise ValueError("no field encryption key: set ERP_FIELD_KEY or pass field_key "
                             "(erpctl up creates one in the data directory)")
        if isinstance(self.mfa_roles, str):
            self.mfa_roles = mfa.parse_roles(self.mfa_roles)
        self.trusted_proxies = proxies.parse_networks(self.trusted_proxies)
