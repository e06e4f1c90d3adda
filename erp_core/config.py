"""ERP settings, from arguments or the environment (ERP_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Settings:
    database_url: str
    # Key for encrypted partner fields; a 32-byte urlsafe-base64 key or a passphrase.
    field_key: str = field(default_factory=lambda: os.environ.get("ERP_FIELD_KEY", ""))
    token_ttl_seconds: int = 8 * 3600
    login_max_failures: int = 5
    login_window_seconds: int = 900
    page_size_max: int = 200
    testing: bool = False

    def __post_init__(self):
        if not self.field_key:
            raise ValueError("no field encryption key: set ERP_FIELD_KEY or pass field_key "
                             "(erpctl up creates one in the data directory)")
