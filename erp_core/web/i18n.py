"""Languages of the web pages: Simplified Chinese and English (Flask-Babel over Babel).

The language of a request is, in this order: the logged-in user's preference (users.locale, set on
the "My account" page), the one picked on the login page (kept in the session), the browser's
Accept-Language, English. Message catalogues live in erp_core/translations/<locale>/LC_MESSAGES/
messages.po (compiled to messages.mo next to it; see docs/translations.md). Numbers, money, dates
and percentages are formatted with the locale's conventions; the company currency CNY is shown as
¥ in Chinese.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import flask_babel
from flask import g, request, session
from flask_babel import Babel, format_currency, format_date, format_datetime, format_decimal, get_locale

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
LANG_KEY = "lang"
DEFAULT = "en"
# locale id -> (name shown in its own language, <html lang>, Accept-Language tag)
LOCALES = {"zh_Hans": ("简体中文", "zh-CN", "zh"), "en": ("English", "en", "en")}


def from_browser() -> str:
    tags = {tag: loc for loc, (_name, _html, tag) in LOCALES.items()}
    best = request.accept_languages.best_match(list(tags)) if request else None
    return tags.get(best, DEFAULT)


def select_locale() -> str:
    user = g.get("user")
    preferred = getattr(user, "locale", None)
    if preferred in LOCALES:
        return preferred
    chosen = session.get(LANG_KEY) if request and request.path.startswith("/app") else None
    return chosen if chosen in LOCALES else from_browser()


def refresh() -> None:
    """Choose the language again (after the user became known)."""
    flask_babel.refresh()


def setup(app) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories=str(TRANSLATIONS))


def current() -> str:
    loc = get_locale()
    return "zh_Hans" if loc is not None and loc.language == "zh" else DEFAULT


def html_lang() -> str:
    return LOCALES[current()][1]


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def money(value) -> str:
    d = _decimal(value)
    return "" if d is None else format_decimal(d, format="#,##0.00")


def currency(value, code: str = "CNY") -> str:
    """An amount with its currency: ¥1,234.50 in Chinese, CN¥1,234.50 in English."""
    d = _decimal(value)
    return "" if d is None else format_currency(d, code, format="¤#,##0.00", currency_digits=False)


def qty(value) -> str:
    """Quantities without trailing zeros: 3, 2.5, 0.125."""
    d = _decimal(value)
    return "" if d is None else format_decimal(d, format="#,##0.###")


def pct(value) -> str:
    d = _decimal(value)
    if d is None:
        return ""
    text = format_decimal(d, format="0.##")
    return f"{text}%" if current() == "zh_Hans" else f"{text} %"


def date(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return format_datetime(value, format="yyyy-MM-dd HH:mm", rebase=False)
    return format_date(value, format="medium")
