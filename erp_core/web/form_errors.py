"""A refused form's problems in the page's language: each pydantic error of the API's schemas (its type
and context, or the message of one of the schemas' own validators) as a translated phrase. In English
the schema's own message is shown as it is, the same words the API answers with."""

from __future__ import annotations

import re

from flask_babel import gettext as _

from . import i18n

_DECIMAL = re.compile(r"must be a decimal (above 0|0 or more) and at most (\S+), written like \"([^\"]+)\" "
                      r"\(at most (\d+) decimal places\)")
_BETWEEN = re.compile(r"must be between (\S+) and (\S+)")
_NOT_A_DAY = re.compile(r"(.+) is not a day of the calendar")
_DECIMAL_STRING = re.compile(r"must be a decimal written as a string, such as \"([^\"]+)\"")


def _by_message(msg: str) -> str | None:
    """The schemas' own validators (erp_core.api.schemas), by their message."""
    fixed = {
        "must not contain NUL characters": _("must not contain NUL characters"),
        "must be valid Unicode text": _("must be valid Unicode text"),
        "must not be blank": _("must not be blank"),
        "must be an e-mail address such as name@example.com": _("must be an e-mail address such as name@example.com"),
        "must be a whole number, such as 42": _("must be a whole number, such as 42"),
        "must be true or false": _("must be true or false"),
        "must be a date written as YYYY-MM-DD": _("must be a date written as YYYY-MM-DD"),
    }
    if msg in fixed:
        return fixed[msg]
    if m := _DECIMAL.match(msg):
        low = _("above 0") if m[1] == "above 0" else _("0 or more")
        return _("must be a number %(low)s and at most %(high)s, written like %(example)s (at most %(n)s decimal "
                 "places)", low=low, high=m[2], example=m[3], n=m[4])
    if m := _BETWEEN.match(msg):
        return _("must be between %(low)s and %(high)s", low=m[1], high=m[2])
    if m := _NOT_A_DAY.match(msg):
        return _("%(value)s is not a day of the calendar", value=m[1][:40])
    if m := _DECIMAL_STRING.match(msg):
        return _("must be a number such as %(example)s", example=m[1])
    return None


def _by_type(kind: str, ctx: dict) -> str | None:
    n = ctx.get("min_length", ctx.get("max_length", ctx.get("decimal_places", ctx.get("max_digits"))))
    limit = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
    texts = {
        "missing": lambda: _("is required"),
        "string_too_short": lambda: _("must not be empty") if n == 1 else _("needs at least %(n)s characters", n=n),
        "string_too_long": lambda: _("must be at most %(n)s characters", n=n),
        "string_pattern_mismatch": lambda: _("holds characters that are not allowed here"),
        "literal_error": lambda: _("must be one of: %(options)s",
                                   options=str(ctx.get("expected", "")).replace("' or '", "', '")),
        "greater_than_equal": lambda: _("must be %(n)s or more", n=limit),
        "greater_than": lambda: _("must be more than %(n)s", n=limit),
        "less_than_equal": lambda: _("must be %(n)s or less", n=limit),
        "less_than": lambda: _("must be less than %(n)s", n=limit),
        "decimal_max_places": lambda: _("has more than %(n)s decimal places", n=n),
        "decimal_max_digits": lambda: _("has more than %(n)s digits", n=n),
        "decimal_whole_digits": lambda: _("is too large"),
        "too_short": lambda: _("needs at least %(n)s entries", n=ctx.get("min_length")),
        "too_long": lambda: _("takes at most %(n)s entries", n=ctx.get("max_length")),
        "extra_forbidden": lambda: _("is not expected here"),
        "date_from_datetime_inexact": lambda: _("must be a date written as YYYY-MM-DD"),
    }
    if kind in texts:
        return texts[kind]()
    if kind.endswith(("_type", "_parsing")):
        return _("has the wrong kind of value")
    return None


def problem(error: dict) -> str:
    """One pydantic error (an item of ValidationError.errors()) as the user reads it."""
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    if i18n.current() == i18n.DEFAULT:
        return msg
    kind = str(error.get("type", ""))
    text = _by_message(msg) if kind == "value_error" else _by_type(kind, error.get("ctx") or {})
    return text or msg
