"""Serving the ERP: its settings, the Flask application, the WSGI server, problem+json errors."""

from __future__ import annotations

from ..app import create_app, error_response
from ..config import Settings
from ..serve import Server
from ..web.i18n import TRANSLATIONS as TRANSLATIONS_DIR

__all__ = ["Settings", "create_app", "error_response", "Server", "TRANSLATIONS_DIR"]
