"""Web pages for business users (placeholder blueprint, filled by the web module)."""

from flask import Blueprint

web = Blueprint("web", __name__)
