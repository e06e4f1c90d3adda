"""Database URLs as text (no SQLAlchemy loaded): the accepted spelling, the embedded database's URL."""

from __future__ import annotations

from ..urls import default_sqlite_url, normalise_url

__all__ = ["default_sqlite_url", "normalise_url"]
