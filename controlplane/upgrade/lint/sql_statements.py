"""What one SQL statement does, as far as the rules care: its kind (a data change, DDL, ...), the
table it writes (and for INSERT ... SELECT the one it reads), its WHERE, the rewrites it causes
(a volatile default, a type change) and the columns or tables it drops, alters or renames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sql_tokens import Tok, find, name_at, skip_words, split_top, statements, tokenize, where_tokens

VOLATILE_FUNCS = {"clock_timestamp", "statement_timestamp", "timeofday", "random", "gen_random_uuid",
                  "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4", "uuid", "nextval",
                  "randomblob", "txid_current"}
STABLE_FUNCS = {"now", "transaction_timestamp", "current_timestamp", "current_date", "current_time",
                "localtimestamp", "localtime"}
STABLE_KEYWORDS = {"CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "LOCALTIMESTAMP", "LOCALTIME"}
SQLITE_NOW_FUNCS = {"datetime", "date", "time", "julianday", "strftime", "unixepoch"}
DDL_VERBS = {"CREATE", "ALTER", "DROP", "RENAME", "COMMENT", "GRANT", "REVOKE", "REINDEX", "CLUSTER"}


def volatile_in(toks: list[Tok]) -> tuple[str, bool] | None:
    """The first non-constant function in an expression: (name, volatile); volatile False means
    stable (one value per statement, like now())."""
    for k, t in enumerate(toks):
        call = k + 1 < len(toks) and toks[k + 1].text == "("
        if t.kind == "word":
            low = t.text.lower()
            if call and low in VOLATILE_FUNCS:
                return f"{low}()", True
            if call and low in STABLE_FUNCS:
                return f"{low}()", False
            if t.up in STABLE_KEYWORDS:
                return t.up, False
            if call and low in SQLITE_NOW_FUNCS:
                args = [a for a in toks[k + 2:] if a.depth > t.depth]
                if any(a.kind == "str" and a.text.strip("'").lower() == "now" for a in args):
                    return f"{low}('now')", False
    return None


@dataclass
class Sql:
    """What one SQL statement does, as far as the rules care."""

    kind: str  # update delete insert-select insert truncate merge ddl other unknown
    verb: str
    table: str | None = None  # the table written (None: interpolated at runtime or absent)
    source: str | None = None  # INSERT ... SELECT: the table read
    where: list[Tok] | None = None
    words: frozenset[str] = frozenset()  # lower-case identifiers, for stage ordering
    rewrites: list[tuple[str, str | None, str, str]] = field(default_factory=list)  # rule, table, what, why
    touches: list[tuple[str | None, str | None, str]] = field(default_factory=list)  # table, column, what
    creates: str | None = None


def analyse_sql(sql: str) -> list[Sql]:
    return [_analyse_statement(s) for s in statements(tokenize(sql))]


def _analyse_statement(st: list[Tok]) -> Sql:
    words = frozenset(t.text.lower() for t in st if t.kind in ("word", "qword"))
    first = st[0]
    if first.kind == "dyn":
        return Sql("unknown", "SQL whose first keyword is interpolated", words=words)
    if first.kind != "word":
        return Sql("other", first.text, words=words)
    i = 0
    if first.up == "WITH":
        k = next((j for j, t in enumerate(st) if t.depth == 0 and t.up in ("UPDATE", "DELETE", "INSERT",
                                                                             "SELECT", "MERGE")), None)
        if k is None:
            return Sql("other", "WITH", words=words)
        i = k
    verb = st[i].up
    if verb in _DATA_VERBS:
        return _DATA_VERBS[verb](st, i, words)
    if verb in DDL_VERBS:
        return _ddl(st, i, verb, words)
    if verb in ("DO", "CALL", "EXECUTE"):
        return Sql("unknown", verb, words=words)
    return Sql("other", verb, words=words)


def _update(st: list[Tok], i: int, words: frozenset[str]) -> Sql:
    j = skip_words(st, i + 1, "ONLY")
    if j < len(st) and st[j].up == "OR":  # SQLite: UPDATE OR IGNORE ...
        j += 2
    table, _ = name_at(st, j)
    return Sql("update", "UPDATE", table, where=where_tokens(st, j), words=words)


def _delete(st: list[Tok], i: int, words: frozenset[str]) -> Sql:
    j = skip_words(st, i + 1, "FROM", "ONLY")
    table, _ = name_at(st, j)
    return Sql("delete", "DELETE", table, where=where_tokens(st, j), words=words)


def _insert(st: list[Tok], i: int, words: frozenset[str]) -> Sql:
    j = i + 1
    if j < len(st) and st[j].up == "OR":
        j += 2
    j = skip_words(st, j, "INTO")
    table, j = name_at(st, j)
    body = next((k for k in range(j, len(st)) if st[k].depth == 0 and st[k].up in ("SELECT", "VALUES",
                                                                                   "DEFAULT")), None)
    if body is not None and st[body].up == "SELECT":
        f = find(st, "FROM", body)
        if f is not None:
            source, after = name_at(st, f + 1)
            return Sql("insert-select", "INSERT ... SELECT", table, source, where_tokens(st, after),
                       words=words)
    return Sql("insert", "INSERT", table, words=words)


def _truncate(st: list[Tok], i: int, words: frozenset[str]) -> Sql:
    table, _ = name_at(st, skip_words(st, i + 1, "TABLE", "ONLY"))
    return Sql("truncate", "TRUNCATE", table, words=words)


def _merge(st: list[Tok], i: int, words: frozenset[str]) -> Sql:
    table, _ = name_at(st, skip_words(st, i + 1, "INTO", "ONLY"))
    return Sql("merge", "MERGE", table, words=words)


_DATA_VERBS = {"UPDATE": _update, "DELETE": _delete, "INSERT": _insert, "REPLACE": _insert,
               "TRUNCATE": _truncate, "MERGE": _merge}


def _ddl(st: list[Tok], i: int, verb: str, words: frozenset[str]) -> Sql:
    second = next((t.up for t in st[i + 1:i + 4] if t.up not in ("OR", "REPLACE", "UNIQUE", "TEMP",
                                                                  "TEMPORARY")), "")
    out = Sql("ddl", f"{verb} {second}".strip(), words=words)
    if verb == "ALTER" and second == "TABLE":
        _alter_table(st, out)
    elif verb == "DROP" and second == "TABLE":
        j = skip_words(st, i + 2, "IF", "EXISTS")
        for part in split_top(st[j:], ",", 0):
            name, _ = name_at(part, 0)
            out.touches.append((name, None, "DROP TABLE"))
    elif verb == "CREATE" and second == "TABLE":
        j = skip_words(st, i + 1, "TEMP", "TEMPORARY", "TABLE", "IF", "NOT", "EXISTS")
        out.creates, _ = name_at(st, j)
    return out


def _alter_table(st: list[Tok], out: Sql) -> None:
    j = skip_words(st, 2, "IF", "EXISTS", "ONLY")
    table, j = name_at(st, j)
    if j < len(st) and st[j].text == "*":
        j += 1
    for act in split_top(st[j:], ",", 0):
        head = act[0].up
        if head == "ADD":
            k = skip_words(act, 1, "COLUMN")
            if k < len(act) and act[k].up in ("CONSTRAINT", "PRIMARY", "UNIQUE", "FOREIGN", "CHECK", "EXCLUDE"):
                continue
            k = skip_words(act, k, "IF", "NOT", "EXISTS")
            column, k = name_at(act, k)
            rest = act[k:]
            d = find(rest, "DEFAULT")
            found = volatile_in(rest[d + 1:]) if d is not None else None
            if found:
                out.rewrites.append(("volatile-default", table, f"ADD COLUMN {column}", default_why(*found)))
            elif find(rest, "GENERATED") is not None and (find(rest, "IDENTITY") is not None
                                                          or find(rest, "STORED") is not None):
                out.rewrites.append(("volatile-default", table, f"ADD COLUMN {column}", GENERATED_WHY))
        elif head == "ALTER":
            k = skip_words(act, 1, "COLUMN")
            column, k = name_at(act, k)
            out.touches.append((table, column, "ALTER COLUMN"))
            k = skip_words(act, k, "SET", "DATA")
            if k < len(act) and act[k].up == "TYPE":
                out.rewrites.append(("column-type-change", table, f"ALTER COLUMN {column} TYPE", TYPE_WHY))
        elif head == "DROP":
            k = skip_words(act, 1, "COLUMN")
            if k < len(act) and act[k].up in ("CONSTRAINT", "DEFAULT"):
                continue
            column, _ = name_at(act, skip_words(act, k, "IF", "EXISTS"))
            out.touches.append((table, column, "DROP COLUMN"))
        elif head == "RENAME":
            k = skip_words(act, 1, "COLUMN")
            if k < len(act) and act[k].up == "TO":
                out.touches.append((table, None, "RENAME TO"))
            else:
                column, _ = name_at(act, k)
                out.touches.append((table, column, "RENAME COLUMN"))


TYPE_WHY = ("changing a column's type rewrites every row of the table under an ACCESS EXCLUSIVE lock on "
            "PostgreSQL (reads and writes wait), and is a table rebuild (batch_alter_table copies the "
            "whole table) on SQLite")
GENERATED_WHY = ("an identity or stored generated column is computed for every existing row: PostgreSQL "
                 "rewrites the table under an ACCESS EXCLUSIVE lock, SQLite rebuilds it")


def default_why(name: str, volatile: bool) -> str:
    if volatile:
        return (f"server default {name} is volatile: PostgreSQL rewrites every row under an ACCESS EXCLUSIVE "
                "lock (reads and writes wait until it is done), and SQLite cannot ADD COLUMN with it, so the "
                "table is rebuilt (batch) or the statement fails")
    return (f"server default {name} is not a constant: PostgreSQL (11+) stores it once without a rewrite, "
            "but SQLite refuses ADD COLUMN with a non-constant default on a table with rows, so Alembic's "
            "batch mode rebuilds the whole table (or the statement fails)")
