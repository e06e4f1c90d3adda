"""Is a data change's key bounded? A WHERE (as SQL tokens) is read into Bounds: the columns it
gives a lower bound, an upper bound, or fixed values (=, IN, BETWEEN), and whether an OR or a part
interpolated at runtime keeps it from being read. A batch bounded by a range of the key (or to
given keys) is what the full-table-update rule asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sql_tokens import Tok, name_at

ANY_COLUMN = "\ue000column"  # a column name interpolated at runtime: accepted as the key
_VALUE_WORDS = {"CAST", "AS", "INTEGER", "INT", "BIGINT", "SMALLINT", "TEXT", "NUMERIC", "DECIMAL", "NULL",
                "TRUE", "FALSE", "INTERVAL", "DATE", "TIMESTAMP", "VARCHAR", "INT4", "INT8", "UUID"}


@dataclass
class Bounds:
    lower: set = field(default_factory=set)
    upper: set = field(default_factory=set)
    point: set = field(default_factory=set)  # = value, IN (...), BETWEEN
    has_or: bool = False
    unknown: bool = False
    seen: set = field(default_factory=set)  # every column compared with a value

    def verdict(self, keys: tuple[str, ...]) -> bool:
        ok = set(keys) | {ANY_COLUMN}
        return bool((self.point | (self.lower & self.upper)) & ok) and not self.has_or

    def why_unbounded(self, key: tuple[str, ...], assumed: bool) -> str:
        """Why these bounds do not bound the key (assumed: the key is 'id' for lack of a known one)."""
        k = key[0]
        note = " (the table's primary key is not created in these migrations: 'id' assumed)" if assumed else ""
        if self.has_or:
            return "its WHERE has OR at the top level, which does not bound a key range"
        if k in self.lower and k not in self.upper:
            return f"its WHERE gives {k} a lower bound but no upper bound{note}"
        if k in self.upper and k not in self.lower:
            return f"its WHERE gives {k} an upper bound but no lower bound{note}"
        others = sorted(c for c in self.seen if c != ANY_COLUMN and c != k)
        if others:
            return f"its WHERE filters on {', '.join(others)}, not on a range of the key {k}{note}"
        return f"its WHERE does not bound the key {k} by a range{note}"


def _strip_parens(toks: list[Tok], depth: int) -> tuple[list[Tok], int]:
    while (len(toks) >= 2 and toks[0].text == "(" and toks[-1].text == ")" and toks[0].depth == depth
           and all(t.depth > depth for t in toks[1:-1])):
        toks, depth = toks[1:-1], depth + 1
    return toks, depth


def sql_bounds(toks: list[Tok], depth: int, b: Bounds) -> None:
    toks, depth = _strip_parens(toks, depth)
    parts: list[list[Tok]] = [[]]
    between = False
    for t in toks:
        if t.depth == depth and t.kind == "word":
            if t.up == "BETWEEN":
                between = True
            elif t.up == "AND":
                if between:
                    between = False
                else:
                    parts.append([])
                    continue
            elif t.up == "OR":
                b.has_or = True
        parts[-1].append(t)
    for part in parts:
        if not part:
            continue
        inner, d = _strip_parens(part, depth)
        if d != depth:
            # A parenthesised conjunct: its bounds count only when it has no OR of its own.
            sub = Bounds()
            sql_bounds(inner, d, sub)
            b.seen |= sub.seen
            if not sub.has_or:
                b.lower |= sub.lower
                b.upper |= sub.upper
                b.point |= sub.point
                b.unknown = b.unknown or sub.unknown
            continue
        _sql_conjunct(part, depth, b)


def _colref(toks: list[Tok]) -> str | None:
    if not toks or toks[0].kind not in ("word", "qword", "dyn"):
        return None
    name, end = name_at(toks, 0)
    if end != len(toks):
        return None
    if name is None:
        return ANY_COLUMN
    if toks[-1].kind == "word" and toks[-1].up in _VALUE_WORDS:
        return None
    return name


def _is_value(toks: list[Tok]) -> bool:
    if not toks or not any(t.kind in ("param", "num", "str", "dyn") for t in toks):
        return False
    for k, t in enumerate(toks):
        if t.kind == "qword":
            return False
        if t.kind == "word" and t.up not in _VALUE_WORDS and not (k + 1 < len(toks) and toks[k + 1].text == "("):
            return False
    return True


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "==": "=="}


def _sql_conjunct(part: list[Tok], depth: int, b: Bounds) -> None:
    top = [k for k, t in enumerate(part) if t.depth == depth]
    if len(part) == 1 and part[0].kind == "dyn":
        b.unknown = True
        return
    for k in top:
        t = part[k]
        if t.up == "BETWEEN":
            negated = k > 0 and part[k - 1].up == "NOT"
            col = _colref(part[:k - 1] if negated else part[:k])
            if col and not negated:
                b.point.add(col)
                b.seen.add(col)
            elif col is None and any(x.kind == "dyn" for x in part[:k]):
                b.unknown = True
            return
        if t.up == "IN":
            negated = k > 0 and part[k - 1].up == "NOT"
            col = _colref(part[:k - 1] if negated else part[:k])
            rest = part[k + 1:]
            sub = any(x.up == "SELECT" for x in rest)
            limited = any(x.up == "LIMIT" for x in rest)
            if col and not negated and (not sub or limited):
                b.point.add(col)
            if col:
                b.seen.add(col)
            return
    for k in top:
        t = part[k]
        if t.kind == "op" and t.text in _FLIP:
            left, right = part[:k], part[k + 1:]
            op = t.text
            col = _colref(left)
            if col is not None and (_is_value(right) or (right and right[0].up == "ANY")):
                pass
            else:
                col, op = _colref(right), _FLIP[op]
                if col is None or not _is_value(left):
                    if any(x.kind == "dyn" for x in part) and not _is_value(left) and not _is_value(right):
                        b.unknown = True
                    return
            b.seen.add(col)
            if op in ("=", "=="):
                b.point.add(col)
            elif op in ("<", "<="):
                b.upper.add(col)
            else:
                b.lower.add(col)
            return
    if any(x.kind == "dyn" for x in part):
        b.unknown = True

