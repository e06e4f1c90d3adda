"""SQL text as the rules read it: a small tokenizer (strings, comments, dollar quotes, parameters,
parenthesis depth), statements split on top-level semicolons, and helpers to find names and the
WHERE clause in a statement's tokens.

A value interpolated at runtime (an f-string's {lo}, a %s) is written into the text as a
placeholder made of DYN characters; its token is of kind "dyn".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DYN = "\ue000"  # stands for a value interpolated at runtime
WORD = re.compile(r"[A-Za-z_\ue000][\w$\ue000]*")
_NUM = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+")
_PARAM = re.compile(r":[A-Za-z_]\w*|%\(\w+\)s|%s|\$\d+|\?")
_DOLLAR = re.compile(r"\$([A-Za-z_]\w*)?\$")
_OPS = ("<=", ">=", "<>", "!=", "==", "::", "||", "->>", "->")
_WHERE_END = {"RETURNING", "ORDER", "LIMIT", "GROUP", "HAVING", "WINDOW", "UNION", "EXCEPT", "INTERSECT",
              "OFFSET", "FETCH"}


@dataclass(frozen=True)
class Tok:
    kind: str  # word, qword, dyn, str, num, param, op, punct
    text: str
    depth: int

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def tokenize(sql: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n, depth = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "'":
            j = i + 1
            while j < n and not (sql[j] == "'" and not sql.startswith("''", j)):
                j += 2 if sql.startswith("''", j) else 1
            toks.append(Tok("str", sql[i:j + 1], depth))
            i = j + 1
        elif c in '"`':
            j = sql.find(c, i + 1)
            j = n if j < 0 else j
            name = sql[i + 1:j]
            toks.append(Tok("dyn" if DYN in name else "qword", name, depth))
            i = j + 1
        elif c == "$" and (m := _DOLLAR.match(sql, i)):
            j = sql.find(m.group(0), m.end())
            j = n if j < 0 else j + len(m.group(0))
            toks.append(Tok("str", sql[i:j], depth))
            i = j
        elif (m := _PARAM.match(sql, i)) and not sql.startswith("::", i):
            toks.append(Tok("param", m.group(0), depth))
            i = m.end()
        elif (m := _NUM.match(sql, i)) and (c.isdigit() or c == "."):
            toks.append(Tok("num", m.group(0), depth))
            i = m.end()
        elif m := WORD.match(sql, i):
            word = m.group(0)
            toks.append(Tok("dyn" if DYN in word else "word", word, depth))
            i = m.end()
        elif c == "(":
            toks.append(Tok("punct", c, depth))
            depth += 1
            i += 1
        elif c == ")":
            depth = max(0, depth - 1)
            toks.append(Tok("punct", c, depth))
            i += 1
        else:
            op = next((o for o in _OPS if sql.startswith(o, i)), c)
            toks.append(Tok("punct" if op in ",;." else "op", op, depth))
            i += len(op)
    return toks


def statements(toks: list[Tok]) -> list[list[Tok]]:
    """Split on top-level semicolons, keeping a trigger body (BEGIN ... END) in its CREATE."""
    out, cur, block = [], [], 0
    for t in toks:
        if t.text == ";" and t.kind == "punct" and t.depth == 0 and block == 0:
            if cur:
                out.append(cur)
            cur = []
            continue
        if cur and cur[0].up == "CREATE" and t.kind == "word" and t.depth == 0:
            if t.up in ("BEGIN", "CASE"):
                block += 1
            elif t.up == "END" and block:
                block -= 1
        cur.append(t)
    if cur:
        out.append(cur)
    return out


def name_at(toks: list[Tok], i: int) -> tuple[str | None, int]:
    """A possibly qualified name at toks[i]: (its last part, lower-cased unless quoted; None when it is
    interpolated at runtime), and the index after it."""
    name, dynamic = None, False
    while i < len(toks) and toks[i].kind in ("word", "qword", "dyn"):
        t = toks[i]
        dynamic = dynamic or t.kind == "dyn"
        name = t.text.lower() if t.kind == "word" else t.text
        if i + 2 < len(toks) and toks[i + 1].text == "." and toks[i + 1].kind == "punct":
            i += 2
            continue
        i += 1
        break
    return (None if dynamic else name), i


def skip_words(toks: list[Tok], i: int, *words: str) -> int:
    while i < len(toks) and toks[i].up in words:
        i += 1
    return i


def find(toks: list[Tok], word: str, start: int = 0, depth: int = 0) -> int | None:
    for k in range(start, len(toks)):
        if toks[k].up == word and toks[k].depth == depth:
            return k
    return None


def where_tokens(toks: list[Tok], start: int, depth: int = 0) -> list[Tok] | None:
    k = find(toks, "WHERE", start, depth)
    if k is None:
        return None
    end = len(toks)
    for j in range(k + 1, len(toks)):
        t = toks[j]
        if t.depth == depth and (t.up in _WHERE_END or (t.up == "ON" and j + 1 < len(toks)
                                                         and toks[j + 1].up == "CONFLICT")):
            end = j
            break
    return toks[k + 1:end]


def split_top(toks: list[Tok], sep: str, depth: int) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    for t in toks:
        if t.text == sep and t.kind == "punct" and t.depth == depth:
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]

