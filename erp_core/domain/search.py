"""Search keys: text folded the same way on every database, in Python, when a row is written.

LIKE is case-insensitive on SQLite (ASCII only) and case-sensitive on PostgreSQL, and neither ignores
accents without an extension. So the searchable columns of a row are folded here (Unicode NFKD, accents
dropped, case folded, runs of white space made one space) into a stored search key, and a query is
folded the same way before it is looked for in the key: the same results on both backends."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
SEPARATOR = "\n"  # between the columns of one key: a folded query never holds one


def fold(text: str | None) -> str:
    """'  Crème  Brûlée ' -> 'creme brulee'."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACE.sub(" ", bare.casefold()).strip()


def key(*columns: str | None) -> str:
    """The stored search key of a row's searchable columns (each folded, one separator between)."""
    return SEPARATOR.join(fold(c) for c in columns)


def same_code(a: str, b: str) -> bool:
    """Codes (SKU, partner and warehouse codes) are unique regardless of case."""
    return a.lower() == b.lower()
