"""Refuse dangerous Alembic migrations before they run (`erpctl upgrade lint`).

A staged upgrade (expand -> batched backfill -> contract) keeps the ERP serving only when every
migration keeps to its stage. This linter reads each file of a versions directory with `ast` -- it
never imports or runs a migration -- and reports one Finding per problem: file, line, rule, what is
wrong and how to fix it.

Rules (Finding.rule):

  full-table-update     UPDATE, DELETE, TRUNCATE, MERGE or INSERT ... SELECT (SQL text given to any
                        `.execute()`, or a SQLAlchemy update()/delete()/from_select() construct) whose
                        WHERE does not bound the table's primary key by a range (or to given keys).
                        `# lint: allow-full-update <reason>` on the statement allows one (a small
                        fixed table); with row estimates, a marked table above the threshold is still
                        an error.
  volatile-default      add_column (or ALTER TABLE ... ADD COLUMN) with a non-constant server
                        default, an identity or a stored generated column.
  column-type-change    alter_column(type_=...) or ALTER COLUMN ... TYPE.
  table-rebuild         batch_alter_table(recreate="always"), or a batch SQLite can only run by
                        copying the table (anything but add_column, create_index, drop_index).
                        These three are errors on a table above the row threshold, warnings when its
                        size is unknown, and not reported for smaller tables or tables the same
                        migration creates.
  stage-declaration     module-level `stage` missing, or not one of expand, backfill, contract.
  ddl-in-backfill       DDL in a stage = "backfill" migration.
  data-in-schema-stage  a data change (a key-bounded one, or a backfill run or declaration) in an
                        expand or contract migration (unbounded ones are full-table-update anywhere;
                        the allow-full-update marker allows a small fixed table in any stage).
  stage-order           a contract that drops or alters a column or table which a backfill reads or
                        writes, while that backfill does not come before it in the revision chain.
  revision-chain        no revision id, a duplicate id, an unknown down_revision, several heads.
  syntax                the file is not valid Python.
  dynamic-sql           (warning) SQL, or a WHERE, built at runtime that the linter cannot read.

SQL is read from string constants, names assigned in the same function or module, concatenation,
`%`/`.format()` and f-strings; an interpolated value the linter cannot resolve stands for "some
value", which is enough to see the statement's shape (`WHERE id BETWEEN {lo} AND {hi}`).
"""

from __future__ import annotations

import ast
import itertools
import re
import sqlite3
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from erp_core.errors import ValidationFailed
from erp_core.ops import STAGES, make_engine, normalise_url

DEFAULT_LARGE_ROWS = 100_000
ERROR, WARNING = "error", "warning"
ALLOW_MARKER = "# lint: allow-full-update small-table"
_MARKER = re.compile(r"#\s*lint:\s*allow-full-update\b(?P<reason>[^#\n]*)")

FIX_BACKFILL = (
    "Declare the change as erp_core.backfill.Backfill(name, table, key, columns, pending, set_clause) in a "
    'migration with stage = "backfill"; the control plane runs it in primary-key batches while the ERP serves. '
    "Or bound this statement by a key range (WHERE id BETWEEN :lo AND :hi) inside a batching loop. "
    f"A small fixed table may be allowed with a marker comment on the statement line: '{ALLOW_MARKER}'.")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    revision: str | None
    rule: str
    severity: str  # "error" | "warning"
    message: str
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity} [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Migration:
    path: str
    revision: str | None
    down_revisions: tuple[str, ...]
    stage: str | None
    doc: str | None


@dataclass(frozen=True)
class LintReport:
    versions_dir: str
    migrations: tuple[Migration, ...]
    findings: tuple[Finding, ...]
    large_rows: int

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def as_dict(self) -> dict:
        return {"versions_dir": self.versions_dir, "large_rows": self.large_rows,
                "migrations": [asdict(m) for m in self.migrations],
                "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [f.as_dict() for f in self.findings]}


def lint_migrations(versions_dir: Path, rows: dict[str, int] | None = None,
                    large_rows: int = DEFAULT_LARGE_ROWS) -> list[Finding]:
    """The findings for every migration in versions_dir, in file and line order."""
    return list(lint_report(versions_dir, rows, large_rows).findings)


def lint_report(versions_dir: Path, rows: dict[str, int] | None = None,
                large_rows: int = DEFAULT_LARGE_ROWS) -> LintReport:
    versions_dir = Path(versions_dir)
    if not versions_dir.is_dir():
        what = "is not a directory" if versions_dir.exists() else "does not exist"
        raise ValidationFailed(f"there is no migrations directory at {versions_dir} (it {what})", field="versions_dir",
                               fix="Pass --versions-dir pointing at an Alembic versions/ directory "
                                   "(without it, erp_core's own migrations are checked).")
    rows_lc = None if rows is None else {k.lower(): int(v) for k, v in rows.items()}
    modules = []
    for path in sorted(versions_dir.glob("*.py")):
        if path.name == "__init__.py":
            continue
        m = _Module(path, rows_lc, large_rows)
        if m.is_migration:
            modules.append(m)
    if not modules:
        raise ValidationFailed(f"{versions_dir} holds no Alembic migrations (Python files with a module-level "
                               "revision = ... and an upgrade() function)", field="versions_dir",
                               fix="Point --versions-dir at the versions/ directory itself, not at the "
                                   "migrations/ directory above it.")
    keys: dict[str, tuple[str, ...]] = {}
    for m in modules:
        keys.update(m.primary_keys)
    findings: list[Finding] = []
    for m in modules:
        m.lint(keys)
        findings.extend(m.findings)
    findings.extend(_chain_findings(modules))
    unique = sorted(set(findings), key=lambda f: (f.path, f.line, f.rule, f.message))
    migrations = tuple(Migration(str(m.path), m.revision, m.down_revisions, m.stage, m.doc) for m in modules)
    return LintReport(str(versions_dir), migrations, tuple(unique), large_rows)


# ---- row estimates from a live database ------------------------------------------------------

def row_estimates(database_url: str) -> tuple[dict[str, int], str]:
    """Approximate rows per table of a database, and where the numbers come from.

    SQLite: sqlite_stat1 (written by ANALYZE) where it has the table, else count(*).
    PostgreSQL: pg_class.reltuples; a table never analyzed has no estimate and is left out.
    """
    url = make_url(normalise_url(database_url))
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValidationFailed("row estimates need a database file, not an in-memory SQLite database",
                                   fix="Pass --data-dir (or a sqlite:///path URL) of the installation.")
        return _sqlite_estimates(Path(url.database))
    if backend == "postgresql":
        engine = make_engine(str(url.render_as_string(hide_password=False)), pool_size=1, max_overflow=0)
        try:
            with engine.connect() as c:
                got = c.execute(text(
                    "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))")).all()
        finally:
            engine.dispose()
        return {name: int(n) for name, n in got if n is not None and n >= 0}, "pg_class.reltuples"
    raise ValidationFailed(f"row estimates are not supported for {backend} databases",
                           fix="Use SQLite or PostgreSQL, or lint without a target database (size "
                               "findings are then warnings).")


def _sqlite_estimates(path: Path) -> tuple[dict[str, int], str]:
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        stat: dict[str, int] = {}
        has_stat = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").fetchone() is not None
        if has_stat:
            for tbl, value in conn.execute("SELECT tbl, stat FROM sqlite_stat1"):
                first = str(value or "").split(" ", 1)[0]
                if first.isdigit():
                    stat[tbl] = max(stat.get(tbl, 0), int(first))
        out = {}
        for t in tables:
            if t in stat:
                out[t] = stat[t]
            else:
                quoted = '"' + t.replace('"', '""') + '"'
                out[t] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]  # noqa: S608 - catalog name
    finally:
        conn.close()
    return out, ("sqlite_stat1, else count(*)" if has_stat else "count(*)")


# ---- SQL text: a small tokenizer and the shapes the rules need -------------------------------

_DYN = "\ue000"  # stands for a value interpolated at runtime
_WORD = re.compile(r"[A-Za-z_\ue000][\w$\ue000]*")
_NUM = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+")
_PARAM = re.compile(r":[A-Za-z_]\w*|%\(\w+\)s|%s|\$\d+|\?")
_DOLLAR = re.compile(r"\$([A-Za-z_]\w*)?\$")
_OPS = ("<=", ">=", "<>", "!=", "==", "::", "||", "->>", "->")

VOLATILE_FUNCS = {"clock_timestamp", "statement_timestamp", "timeofday", "random", "gen_random_uuid",
                  "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4", "uuid", "nextval",
                  "randomblob", "txid_current"}
STABLE_FUNCS = {"now", "transaction_timestamp", "current_timestamp", "current_date", "current_time",
                "localtimestamp", "localtime"}
STABLE_KEYWORDS = {"CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "LOCALTIMESTAMP", "LOCALTIME"}
SQLITE_NOW_FUNCS = {"datetime", "date", "time", "julianday", "strftime", "unixepoch"}
DDL_VERBS = {"CREATE", "ALTER", "DROP", "RENAME", "COMMENT", "GRANT", "REVOKE", "REINDEX", "CLUSTER"}
_VALUE_WORDS = {"CAST", "AS", "INTEGER", "INT", "BIGINT", "SMALLINT", "TEXT", "NUMERIC", "DECIMAL", "NULL",
                "TRUE", "FALSE", "INTERVAL", "DATE", "TIMESTAMP", "VARCHAR", "INT4", "INT8", "UUID"}
_WHERE_END = {"RETURNING", "ORDER", "LIMIT", "GROUP", "HAVING", "WINDOW", "UNION", "EXCEPT", "INTERSECT",
              "OFFSET", "FETCH"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # word, qword, dyn, str, num, param, op, punct
    text: str
    depth: int

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def _tokenize(sql: str) -> list[_Tok]:
    toks: list[_Tok] = []
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
            toks.append(_Tok("str", sql[i:j + 1], depth))
            i = j + 1
        elif c in '"`':
            j = sql.find(c, i + 1)
            j = n if j < 0 else j
            name = sql[i + 1:j]
            toks.append(_Tok("dyn" if _DYN in name else "qword", name, depth))
            i = j + 1
        elif c == "$" and (m := _DOLLAR.match(sql, i)):
            j = sql.find(m.group(0), m.end())
            j = n if j < 0 else j + len(m.group(0))
            toks.append(_Tok("str", sql[i:j], depth))
            i = j
        elif (m := _PARAM.match(sql, i)) and not sql.startswith("::", i):
            toks.append(_Tok("param", m.group(0), depth))
            i = m.end()
        elif (m := _NUM.match(sql, i)) and (c.isdigit() or c == "."):
            toks.append(_Tok("num", m.group(0), depth))
            i = m.end()
        elif m := _WORD.match(sql, i):
            word = m.group(0)
            toks.append(_Tok("dyn" if _DYN in word else "word", word, depth))
            i = m.end()
        elif c == "(":
            toks.append(_Tok("punct", c, depth))
            depth += 1
            i += 1
        elif c == ")":
            depth = max(0, depth - 1)
            toks.append(_Tok("punct", c, depth))
            i += 1
        else:
            op = next((o for o in _OPS if sql.startswith(o, i)), c)
            toks.append(_Tok("punct" if op in ",;." else "op", op, depth))
            i += len(op)
    return toks


def _statements(toks: list[_Tok]) -> list[list[_Tok]]:
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


def _name_at(toks: list[_Tok], i: int) -> tuple[str | None, int]:
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


def _skip_words(toks: list[_Tok], i: int, *words: str) -> int:
    while i < len(toks) and toks[i].up in words:
        i += 1
    return i


def _find(toks: list[_Tok], word: str, start: int = 0, depth: int = 0) -> int | None:
    for k in range(start, len(toks)):
        if toks[k].up == word and toks[k].depth == depth:
            return k
    return None


def _where_tokens(toks: list[_Tok], start: int, depth: int = 0) -> list[_Tok] | None:
    k = _find(toks, "WHERE", start, depth)
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


def _split_top(toks: list[_Tok], sep: str, depth: int) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    for t in toks:
        if t.text == sep and t.kind == "punct" and t.depth == depth:
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def _volatile_in(toks: list[_Tok]) -> tuple[str, bool] | None:
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
class _Sql:
    """What one SQL statement does, as far as the rules care."""

    kind: str  # update delete insert-select insert truncate merge ddl other unknown
    verb: str
    table: str | None = None  # the table written (None: interpolated at runtime or absent)
    source: str | None = None  # INSERT ... SELECT: the table read
    where: list[_Tok] | None = None
    words: frozenset[str] = frozenset()  # lower-case identifiers, for stage ordering
    rewrites: list[tuple[str, str | None, str, str]] = field(default_factory=list)  # rule, table, what, why
    touches: list[tuple[str | None, str | None, str]] = field(default_factory=list)  # table, column, what
    creates: str | None = None


def _analyse_sql(sql: str) -> list[_Sql]:
    return [_analyse_statement(s) for s in _statements(_tokenize(sql))]


def _analyse_statement(st: list[_Tok]) -> _Sql:
    words = frozenset(t.text.lower() for t in st if t.kind in ("word", "qword"))
    first = st[0]
    if first.kind == "dyn":
        return _Sql("unknown", "SQL whose first keyword is interpolated", words=words)
    if first.kind != "word":
        return _Sql("other", first.text, words=words)
    i = 0
    if first.up == "WITH":
        k = next((j for j, t in enumerate(st) if t.depth == 0 and t.up in ("UPDATE", "DELETE", "INSERT",
                                                                             "SELECT", "MERGE")), None)
        if k is None:
            return _Sql("other", "WITH", words=words)
        i = k
    verb = st[i].up
    if verb == "UPDATE":
        j = _skip_words(st, i + 1, "ONLY")
        if j < len(st) and st[j].up == "OR":  # SQLite: UPDATE OR IGNORE ...
            j += 2
        table, _ = _name_at(st, j)
        return _Sql("update", "UPDATE", table, where=_where_tokens(st, j), words=words)
    if verb == "DELETE":
        j = _skip_words(st, i + 1, "FROM", "ONLY")
        table, _ = _name_at(st, j)
        return _Sql("delete", "DELETE", table, where=_where_tokens(st, j), words=words)
    if verb in ("INSERT", "REPLACE"):
        j = i + 1
        if j < len(st) and st[j].up == "OR":
            j += 2
        j = _skip_words(st, j, "INTO")
        table, j = _name_at(st, j)
        body = next((k for k in range(j, len(st)) if st[k].depth == 0 and st[k].up in ("SELECT", "VALUES",
                                                                                       "DEFAULT")), None)
        if body is not None and st[body].up == "SELECT":
            f = _find(st, "FROM", body)
            if f is not None:
                source, after = _name_at(st, f + 1)
                return _Sql("insert-select", "INSERT ... SELECT", table, source, _where_tokens(st, after),
                            words=words)
        return _Sql("insert", "INSERT", table, words=words)
    if verb == "TRUNCATE":
        j = _skip_words(st, i + 1, "TABLE", "ONLY")
        table, _ = _name_at(st, j)
        return _Sql("truncate", "TRUNCATE", table, words=words)
    if verb == "MERGE":
        j = _skip_words(st, i + 1, "INTO", "ONLY")
        table, _ = _name_at(st, j)
        return _Sql("merge", "MERGE", table, words=words)
    if verb in DDL_VERBS:
        second = next((t.up for t in st[i + 1:i + 4] if t.up not in ("OR", "REPLACE", "UNIQUE", "TEMP",
                                                                      "TEMPORARY")), "")
        out = _Sql("ddl", f"{verb} {second}".strip(), words=words)
        if verb == "ALTER" and second == "TABLE":
            _alter_table(st, out)
        elif verb == "DROP" and second == "TABLE":
            j = _skip_words(st, i + 2, "IF", "EXISTS")
            for part in _split_top(st[j:], ",", 0):
                name, _ = _name_at(part, 0)
                out.touches.append((name, None, "DROP TABLE"))
        elif verb == "CREATE" and second == "TABLE":
            j = _skip_words(st, i + 1, "TEMP", "TEMPORARY", "TABLE", "IF", "NOT", "EXISTS")
            out.creates, _ = _name_at(st, j)
        return out
    if verb in ("DO", "CALL", "EXECUTE"):
        return _Sql("unknown", verb, words=words)
    return _Sql("other", verb, words=words)


def _alter_table(st: list[_Tok], out: _Sql) -> None:
    j = _skip_words(st, 2, "IF", "EXISTS", "ONLY")
    table, j = _name_at(st, j)
    if j < len(st) and st[j].text == "*":
        j += 1
    for act in _split_top(st[j:], ",", 0):
        head = act[0].up
        if head == "ADD":
            k = _skip_words(act, 1, "COLUMN")
            if k < len(act) and act[k].up in ("CONSTRAINT", "PRIMARY", "UNIQUE", "FOREIGN", "CHECK", "EXCLUDE"):
                continue
            k = _skip_words(act, k, "IF", "NOT", "EXISTS")
            column, k = _name_at(act, k)
            rest = act[k:]
            d = _find(rest, "DEFAULT")
            found = _volatile_in(rest[d + 1:]) if d is not None else None
            if found:
                out.rewrites.append(("volatile-default", table, f"ADD COLUMN {column}", _default_why(*found)))
            elif _find(rest, "GENERATED") is not None and (_find(rest, "IDENTITY") is not None
                                                           or _find(rest, "STORED") is not None):
                out.rewrites.append(("volatile-default", table, f"ADD COLUMN {column}", _GENERATED_WHY))
        elif head == "ALTER":
            k = _skip_words(act, 1, "COLUMN")
            column, k = _name_at(act, k)
            out.touches.append((table, column, "ALTER COLUMN"))
            k = _skip_words(act, k, "SET", "DATA")
            if k < len(act) and act[k].up == "TYPE":
                out.rewrites.append(("column-type-change", table, f"ALTER COLUMN {column} TYPE", _TYPE_WHY))
        elif head == "DROP":
            k = _skip_words(act, 1, "COLUMN")
            if k < len(act) and act[k].up in ("CONSTRAINT", "DEFAULT"):
                continue
            column, _ = _name_at(act, _skip_words(act, k, "IF", "EXISTS"))
            out.touches.append((table, column, "DROP COLUMN"))
        elif head == "RENAME":
            k = _skip_words(act, 1, "COLUMN")
            if k < len(act) and act[k].up == "TO":
                out.touches.append((table, None, "RENAME TO"))
            else:
                column, _ = _name_at(act, k)
                out.touches.append((table, column, "RENAME COLUMN"))


_TYPE_WHY = ("changing a column's type rewrites every row of the table under an ACCESS EXCLUSIVE lock on "
             "PostgreSQL (reads and writes wait), and is a table rebuild (batch_alter_table copies the "
             "whole table) on SQLite")
_GENERATED_WHY = ("an identity or stored generated column is computed for every existing row: PostgreSQL "
                  "rewrites the table under an ACCESS EXCLUSIVE lock, SQLite rebuilds it")


def _default_why(name: str, volatile: bool) -> str:
    if volatile:
        return (f"server default {name} is volatile: PostgreSQL rewrites every row under an ACCESS EXCLUSIVE "
                "lock (reads and writes wait until it is done), and SQLite cannot ADD COLUMN with it, so the "
                "table is rebuilt (batch) or the statement fails")
    return (f"server default {name} is not a constant: PostgreSQL (11+) stores it once without a rewrite, "
            "but SQLite refuses ADD COLUMN with a non-constant default on a table with rows, so Alembic's "
            "batch mode rebuilds the whole table (or the statement fails)")


# ---- WHERE: is the key bounded? --------------------------------------------------------------

_ANY_COLUMN = "\ue000column"  # a column name interpolated at runtime: accepted as the key


@dataclass
class _Bounds:
    lower: set = field(default_factory=set)
    upper: set = field(default_factory=set)
    point: set = field(default_factory=set)  # = value, IN (...), BETWEEN
    has_or: bool = False
    unknown: bool = False
    seen: set = field(default_factory=set)  # every column compared with a value

    def verdict(self, keys: tuple[str, ...]) -> bool:
        ok = set(keys) | {_ANY_COLUMN}
        return bool((self.point | (self.lower & self.upper)) & ok) and not self.has_or


def _strip_parens(toks: list[_Tok], depth: int) -> tuple[list[_Tok], int]:
    while (len(toks) >= 2 and toks[0].text == "(" and toks[-1].text == ")" and toks[0].depth == depth
           and all(t.depth > depth for t in toks[1:-1])):
        toks, depth = toks[1:-1], depth + 1
    return toks, depth


def _sql_bounds(toks: list[_Tok], depth: int, b: _Bounds) -> None:
    toks, depth = _strip_parens(toks, depth)
    parts: list[list[_Tok]] = [[]]
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
            sub = _Bounds()
            _sql_bounds(inner, d, sub)
            b.seen |= sub.seen
            if not sub.has_or:
                b.lower |= sub.lower
                b.upper |= sub.upper
                b.point |= sub.point
                b.unknown = b.unknown or sub.unknown
            continue
        _sql_conjunct(part, depth, b)


def _colref(toks: list[_Tok]) -> str | None:
    if not toks or toks[0].kind not in ("word", "qword", "dyn"):
        return None
    name, end = _name_at(toks, 0)
    if end != len(toks):
        return None
    if name is None:
        return _ANY_COLUMN
    if toks[-1].kind == "word" and toks[-1].up in _VALUE_WORDS:
        return None
    return name


def _is_value(toks: list[_Tok]) -> bool:
    if not toks or not any(t.kind in ("param", "num", "str", "dyn") for t in toks):
        return False
    for k, t in enumerate(toks):
        if t.kind == "qword":
            return False
        if t.kind == "word" and t.up not in _VALUE_WORDS and not (k + 1 < len(toks) and toks[k + 1].text == "("):
            return False
    return True


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "==": "=="}


def _sql_conjunct(part: list[_Tok], depth: int, b: _Bounds) -> None:
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


# ---- Python: names, strings, scopes ----------------------------------------------------------

_TEXT_FUNCS = {"sqlalchemy.text", "sqlalchemy.sql.text", "sqlalchemy.sql.expression.text", "sqlalchemy.DDL",
               "sqlalchemy.schema.DDL", "sqlalchemy.literal_column", "sqlalchemy.sql.literal_column",
               "sqlalchemy.sql.expression.literal_column"}
_CONSTRUCT_METHODS = {"update", "delete", "insert", "select", "where", "values", "from_select", "returning",
                      "filter", "filter_by", "join", "select_from", "order_by", "limit", "subquery", "cte",
                      "with_only_columns", "scalar_subquery", "ordered_values", "inline", "on_conflict_do_nothing",
                      "on_conflict_do_update", "prefix_with"}
_TEXT_WRAPPERS = {"bindparams", "columns", "execution_options"}
OP_DDL = {"add_column", "drop_column", "alter_column", "create_table", "drop_table", "rename_table",
          "create_index", "drop_index", "create_foreign_key", "create_unique_constraint",
          "create_check_constraint", "create_primary_key", "create_exclude_constraint", "drop_constraint",
          "create_table_comment", "drop_table_comment", "batch_alter_table"}
# What Alembic can do on SQLite inside a batch without copying the table (alembic.ddl.sqlite).
_BATCH_IN_PLACE = {"add_column", "create_index", "drop_index", "f"}
_MAX_CANDIDATES = 32


class _Dynamic(Exception):
    """A value the linter cannot read statically."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _placeholder(n: int) -> str:
    return f"{_DYN}{n}{_DYN}"


class _Module:
    """One migration file: parsed once, linted against the keys every migration declares."""

    def __init__(self, path: Path, rows: dict[str, int] | None, large_rows: int):
        self.path = path
        self.rows = rows
        self.large_rows = large_rows
        self.findings: list[Finding] = []
        self.revision: str | None = None
        self.down_revisions: tuple[str, ...] = ()
        self.down_line = 1
        self.revision_line = 1
        self.stage: str | None = None
        self.stage_node: ast.AST | None = None
        self.stage_declared = False
        self.doc: str | None = None
        self.primary_keys: dict[str, tuple[str, ...]] = {}
        self.created: set[str] = set()
        self.contract_touches: list[tuple[str, str | None, int, str]] = []
        self.backfill_refs: list[tuple[str, frozenset[str] | None, int]] = []
        self._n = 0
        try:
            self.source = path.read_text(encoding="utf-8")
            self.tree = ast.parse(self.source, filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
            line = getattr(exc, "lineno", None) or 1
            self.tree = None
            self.source = ""
            self.is_migration = True
            self._add(line, "syntax", ERROR, f"cannot parse the migration: {exc.__class__.__name__}: "
                      f"{getattr(exc, 'msg', exc)}", "Fix the Python syntax; a migration that does not parse "
                      "cannot be applied either.")
            return
        self.lines = self.source.splitlines()
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.imports = self._imports()
        doc = (ast.get_docstring(self.tree) or "").strip()
        self.doc = doc.splitlines()[0] if doc else None
        self._scopes: dict[ast.AST, dict[str, list]] = {}
        self._read_header()
        has_upgrade = any(isinstance(n, ast.FunctionDef) and n.name == "upgrade" for n in self.tree.body)
        self.is_migration = has_upgrade or self.revision is not None
        if self.is_migration:
            self._collect_schema()

    # -- findings ---------------------------------------------------------------------------------

    def _add(self, line: int, rule: str, severity: str, message: str, fix: str) -> None:
        self.findings.append(Finding(str(self.path), int(line), getattr(self, "revision", None), rule, severity,
                                     message, fix))

    # -- header: revision, down_revision, stage -----------------------------------------------------

    def _read_header(self) -> None:
        for node in self.tree.body:
            targets, value = [], None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            for t in targets:
                if not isinstance(t, ast.Name):
                    continue
                if t.id == "revision" and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    self.revision, self.revision_line = value.value, node.lineno
                elif t.id == "down_revision":
                    self.down_line = node.lineno
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        self.down_revisions = (value.value,)
                    elif isinstance(value, (ast.Tuple, ast.List)):
                        self.down_revisions = tuple(e.value for e in value.elts if isinstance(e, ast.Constant)
                                                    and isinstance(e.value, str))
                elif t.id == "stage":
                    self.stage_declared = True
                    self.stage_node = node
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        self.stage = value.value

    def _imports(self) -> dict[str, str]:
        out = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        out[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        out[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    out[a.asname or a.name] = f"{node.module}.{a.name}"
        return out

    def qualname(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.imports.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def _is_op(self, call: ast.Call, *names: str) -> str | None:
        """The alembic.op function a call is (op.add_column(...)), if it is one of names (or any)."""
        q = self.qualname(call.func)
        if q and q.startswith("alembic.op."):
            name = q.rsplit(".", 1)[1]
            if not names or name in names:
                return name
        return None

    def _is_sqlalchemy(self, call: ast.Call, *names: str) -> bool:
        q = self.qualname(call.func) or ""
        return q.startswith("sqlalchemy") and q.rsplit(".", 1)[-1] in names

    # -- scopes and static values -----------------------------------------------------------------

    def _scope_of(self, node: ast.AST) -> ast.AST:
        p = self.parents.get(node)
        while p is not None and not isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            p = self.parents.get(p)
        return p if p is not None else self.tree

    def _bindings(self, scope: ast.AST) -> dict[str, list]:
        if scope in self._scopes:
            return self._scopes[scope]
        out: dict[str, list] = {}

        def bind(target, entry):
            if isinstance(target, ast.Name):
                out.setdefault(target.id, []).append(entry)
            elif isinstance(target, (ast.Tuple, ast.List)):
                for e in target.elts:
                    bind(e, ("unpacked", None))

        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = scope.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None:
                    out.setdefault(arg.arg, []).append(("param", None))
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    out.setdefault(node.name, []).append(("def", node))
                continue
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    bind(t, ("value", node.value))
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                bind(node.target, ("value", node.value))
            elif isinstance(node, ast.AugAssign):
                bind(node.target, ("augmented", node))
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                bind(node.target, ("for", node.iter))
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                bind(node.optional_vars, ("with", node.context_expr))
            elif isinstance(node, ast.NamedExpr):
                bind(node.target, ("value", node.value))
            stack.extend(ast.iter_child_nodes(node))
        self._scopes[scope] = out
        return out

    def lookup(self, name: str, node: ast.AST) -> list[tuple[str, ast.AST | None]] | None:
        scope = self._scope_of(node)
        while True:
            found = self._bindings(scope).get(name)
            if found:
                return found
            if scope is self.tree:
                return None
            scope = self._scope_of(scope)

    def strings(self, node: ast.AST, depth: int = 0) -> list[str]:
        """Every text a string expression can have (interpolated unknowns become placeholders);
        raises _Dynamic when it cannot be read."""
        if depth > 12:
            raise _Dynamic("the value is built through too many steps")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.Constant):
                    parts.append(str(v.value))
                    continue
                sub = None
                if v.conversion == -1 and v.format_spec is None:
                    try:
                        sub = self.strings(v.value, depth + 1)
                    except _Dynamic:
                        sub = None
                parts.append(sub[0] if sub and len(sub) == 1 else self._new_placeholder())
            return ["".join(parts)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.strings(node.left, depth + 1), self.strings(node.right, depth + 1)
            return [a + b for a, b in itertools.islice(itertools.product(left, right), _MAX_CANDIDATES)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return [self._fill_percent(s) for s in self.strings(node.left, depth + 1)]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
                and len(node.args) == 1):
            return self._joined(node, depth)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"):
            return [self._fill_format(s) for s in self.strings(node.func.value, depth + 1)]
        if isinstance(node, ast.IfExp):
            return (self.strings(node.body, depth + 1) + self.strings(node.orelse, depth + 1))[:_MAX_CANDIDATES]
        if isinstance(node, ast.Name):
            out = []
            for kind, value in self._entries(node):
                if kind == "value":
                    out.extend(self.strings(value, depth + 1))
                elif kind == "for":
                    out.extend(self.sequence(value, depth + 1))
                else:
                    raise _Dynamic(self._why_dynamic(node.id, kind))
            return out[:_MAX_CANDIDATES]
        raise _Dynamic(f"'{ast.unparse(node)[:60]}' is computed at runtime")

    def _joined(self, node: ast.Call, depth: int) -> list[str]:
        """sep.join(...): the items when they can be listed; for a comprehension, two copies of its
        element (enough to show the statement's shape, e.g. an OR between items); else a placeholder."""
        seps = self.strings(node.func.value, depth + 1)
        items = node.args[0]
        if isinstance(items, (ast.GeneratorExp, ast.ListComp, ast.SetComp)):
            try:
                elts = self.strings(items.elt, depth + 1)
            except _Dynamic:
                elts = [self._new_placeholder()]
            return [sep.join((e, e)) for sep in seps for e in elts][:_MAX_CANDIDATES]
        try:
            listed = self.sequence(items, depth + 1)
        except _Dynamic:
            return [self._new_placeholder()]
        return [sep.join(listed) for sep in seps]

    def sequence(self, node: ast.AST, depth: int = 0) -> list[str]:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for e in node.elts for s in self.strings(e, depth + 1)]
        if isinstance(node, ast.Name):
            out = []
            for kind, value in self._entries(node):
                if kind != "value":
                    raise _Dynamic(self._why_dynamic(node.id, kind))
                out.extend(self.sequence(value, depth + 1))
            return out
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("sorted", "tuple", "list", "reversed") and len(node.args) == 1):
            return self.sequence(node.args[0], depth + 1)
        raise _Dynamic(f"'{ast.unparse(node)[:60]}' is computed at runtime")

    def _entries(self, name: ast.Name) -> list:
        found = self.lookup(name.id, name)
        if not found:
            raise _Dynamic(f"'{name.id}' is not assigned in this module")
        return found

    @staticmethod
    def _why_dynamic(name: str, kind: str) -> str:
        return {"param": f"'{name}' is a function parameter", "augmented": f"'{name}' is changed with +=",
                "with": f"'{name}' comes from a with statement", "unpacked": f"'{name}' is unpacked at runtime",
                "def": f"'{name}' is a function"}.get(kind, f"'{name}' is computed at runtime")

    def _new_placeholder(self) -> str:
        self._n += 1
        return _placeholder(self._n)

    def _fill_percent(self, s: str) -> str:
        return re.sub(r"%\(\w+\)[sdr]|%[sdr]", lambda _m: self._new_placeholder(), s).replace("%%", "%")

    def _fill_format(self, s: str) -> str:
        s = s.replace("{{", "\0").replace("}}", "\1")
        s = re.sub(r"\{[^{}]*\}", lambda _m: self._new_placeholder(), s)
        return s.replace("\0", "{").replace("\1", "}")

    def one_string(self, node: ast.AST | None) -> str | None:
        if node is None:
            return None
        try:
            got = self.strings(node)
        except _Dynamic:
            return None
        return got[0] if len(got) == 1 and _DYN not in got[0] else None

    def table_name(self, node: ast.AST | None) -> str | None:
        """The table a SQLAlchemy table expression names: sa.table("t"), sa.Table("t", ...), a name
        bound to one, or a string."""
        if node is None:
            return None
        if isinstance(node, ast.Call):
            if self._is_sqlalchemy(node, "table", "Table") and node.args:
                name = self.one_string(node.args[0])
                return name.lower() if name else None
            return None
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, node) or []
            names = {self.table_name(v) for kind, v in found if kind == "value"}
            return names.pop() if len(names) == 1 else None
        name = self.one_string(node)
        return name.lower() if name else None

    @staticmethod
    def arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value
        return call.args[pos] if len(call.args) > pos else None

    @staticmethod
    def kwarg(call: ast.Call, name: str) -> ast.AST | None:
        return next((kw.value for kw in call.keywords if kw.arg == name), None)

    # -- first pass: what the schema looks like ------------------------------------------------------

    def _collect_schema(self) -> None:
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            name = self._is_op(node)
            if name == "create_table":
                table = self.one_string(self.arg(node, 0, "table_name"))
                if table:
                    self.created.add(table.lower())
                    pk = self._table_pk(node)
                    if pk:
                        self.primary_keys[table.lower()] = pk
            elif name == "create_primary_key":
                table = self.one_string(self.arg(node, 1, "table_name"))
                cols = self.arg(node, 2, "columns")
                if table and isinstance(cols, (ast.List, ast.Tuple)):
                    got = tuple(c for c in (self.one_string(e) for e in cols.elts) if c)
                    if got:
                        self.primary_keys[table.lower()] = tuple(c.lower() for c in got)
            elif name == "execute" and node.args:
                kind, texts = self._sql_of(node.args[0])
                for s in texts if kind == "sql" else ():
                    for st in _analyse_sql(s):
                        if st.creates:
                            self.created.add(st.creates)

    def _table_pk(self, call: ast.Call) -> tuple[str, ...]:
        cols = []
        for a in call.args[1:]:
            if not isinstance(a, ast.Call):
                continue
            if self._is_sqlalchemy(a, "PrimaryKeyConstraint"):
                return tuple(c.lower() for c in (self.one_string(e) for e in a.args) if c)
            if self._is_sqlalchemy(a, "Column"):
                pk = self.kwarg(a, "primary_key")
                if isinstance(pk, ast.Constant) and pk.value is True and a.args:
                    name = self.one_string(a.args[0])
                    if name:
                        cols.append(name.lower())
        return tuple(cols)

    # -- second pass: the rules ---------------------------------------------------------------------

    def lint(self, keys: dict[str, tuple[str, ...]]) -> None:
        if self.tree is None:
            return
        self.keys = keys
        self._check_stage()
        batches = self._batches()
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            method = func.attr if isinstance(func, ast.Attribute) else None
            op_name = self._is_op(node)
            batch = batches.get(node)
            if method in ("execute", "exec_driver_sql") and op_name in (None, "execute") and (
                    node.args or self.kwarg(node, "sqltext") is not None):
                self._check_execute(node)
            root = self._construct_root(node)
            if root:
                self._check_construct(node, *root)
            if op_name and op_name != "execute":
                self._check_op(node, op_name, None)
            elif batch is not None and method:
                self._check_op(node, method, batch)
            q = self.qualname(func) or ""
            if q.startswith("erp_core.backfill."):
                self._check_backfill_call(node, q.rsplit(".", 1)[1])
        for with_call, (table, ops) in self._batch_groups(batches).items():
            self._check_batch(with_call, table, ops)

    def _check_stage(self) -> None:
        fix = ('Declare the stage at module level: stage = "expand" (additive; old code keeps working), '
               '"backfill" (data only, declared through erp_core.backfill) or "contract" (removes what old '
               "code needed; runs after the new code is everywhere).")
        if not self.stage_declared:
            self._add(1, "stage-declaration", ERROR, "the migration declares no stage", fix)
        elif self.stage not in STAGES:
            shown = repr(self.stage) if self.stage is not None else "a value computed at runtime"
            self._add(self.stage_node.lineno, "stage-declaration", ERROR,
                      f"stage is {shown}, not one of {', '.join(STAGES)}", fix)

    # -- rule 1 and 3: data changes ----------------------------------------------------------------

    def _stmt_lines(self, node: ast.AST) -> range:
        p = node
        while p is not None and not isinstance(p, ast.stmt):
            p = self.parents.get(p)
        if p is None or hasattr(p, "body"):
            return range(node.lineno, (node.end_lineno or node.lineno) + 1)
        return range(p.lineno, (p.end_lineno or p.lineno) + 1)

    def _marker(self, lines) -> tuple[int, str] | None:
        for ln in lines:
            if 0 < ln <= len(self.lines) and (m := _MARKER.search(self.lines[ln - 1])):
                return ln, m.group("reason").strip()
        return None

    def _sql_of(self, node: ast.AST, depth: int = 0) -> tuple[str, list[str]]:
        """("sql", texts) | ("construct", []) | ("dynamic", [why])."""
        while (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr in _TEXT_WRAPPERS):
            node = node.func.value
        if isinstance(node, ast.Call):
            q = self.qualname(node.func) or ""
            if q in _TEXT_FUNCS and (node.args or node.keywords):
                try:
                    return "sql", self.strings(self.arg(node, 0, "text"))
                except _Dynamic as d:
                    return "dynamic", [d.why]
            if self._is_construct(node):
                return "construct", []
        if isinstance(node, ast.Name) and depth < 8:
            found = self.lookup(node.id, node)
            if found and all(kind == "value" for kind, _ in found):
                texts: list[str] = []
                for _kind, value in found:
                    kind, got = self._sql_of(value, depth + 1)
                    if kind == "dynamic":
                        return kind, got
                    texts.extend(got)
                if texts or all(self._sql_of(v, depth + 1)[0] == "construct" for _k, v in found):
                    return ("sql", texts) if texts else ("construct", [])
        try:
            return "sql", self.strings(node)
        except _Dynamic as d:
            return "dynamic", [d.why]

    def _is_construct(self, node: ast.AST) -> bool:
        while isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                if node.func.attr in _CONSTRUCT_METHODS:
                    return True
                node = node.func.value
                continue
            return (self.qualname(node.func) or "").startswith("sqlalchemy")
        return False

    def _check_execute(self, call: ast.Call) -> None:
        arg = call.args[0] if call.args else self.kwarg(call, "sqltext")
        kind, texts = self._sql_of(arg)
        line = call.lineno
        if kind == "dynamic":
            self._add(line, "dynamic-sql", WARNING,
                      f"cannot check SQL built at runtime: {texts[0]}",
                      "Write the SQL as a string constant (or an f-string with only values interpolated) so "
                      "it can be checked before it runs; a data change belongs in an erp_core.backfill "
                      "Backfill.")
            return
        lines = self._stmt_lines(call)
        for s in texts:
            for st in _analyse_sql(s):
                self._check_sql(st, line, lines)

    def _check_sql(self, st: _Sql, line: int, lines: range) -> None:
        if st.kind == "unknown":
            self._add(line, "dynamic-sql", WARNING, f"cannot check SQL built at runtime: {st.verb}",
                      "Write the statement out as SQL text the linter can read; a data change belongs in an "
                      "erp_core.backfill Backfill.")
            return
        if st.kind == "ddl":
            if self.stage == "backfill":
                self._ddl_in_backfill(line, f"op.execute({st.verb} ...)")
            for rule, table, what, why in st.rewrites:
                self._rewrite(line, rule, table, what, why)
            if self.stage == "contract":
                for table, column, what in st.touches:
                    if table:
                        self.contract_touches.append((table, column, line, what))
            return
        if st.kind in ("other", "insert"):
            return
        table = st.source if st.kind == "insert-select" else st.table
        if st.kind in ("truncate", "merge"):
            self._data_change(line, lines, st.verb, st.table, False,
                              "TRUNCATE empties the whole table" if st.kind == "truncate"
                              else "the linter cannot prove a MERGE is bounded by a key range", None)
            return
        key, assumed = self._key(table)
        if st.where is None:
            bounded, why, unknown = False, "there is no WHERE", False
        else:
            b = _Bounds()
            _sql_bounds(st.where, 0, b)
            bounded = b.verdict(key)
            unknown = b.unknown and not bounded
            why = self._why_unbounded(b, key, assumed)
        self._data_change(line, lines, st.verb, st.table, bounded, why, st, unknown=unknown, source=st.source)

    def _key(self, table: str | None) -> tuple[tuple[str, ...], bool]:
        pk = self.keys.get(table or "")
        if pk:
            return (pk[0],), False
        return ("id",), True

    @staticmethod
    def _why_unbounded(b: _Bounds, key: tuple[str, ...], assumed: bool) -> str:
        k = key[0]
        note = " (the table's primary key is not created in these migrations: 'id' assumed)" if assumed else ""
        if b.has_or:
            return "its WHERE has OR at the top level, which does not bound a key range"
        if k in b.lower and k not in b.upper:
            return f"its WHERE gives {k} a lower bound but no upper bound{note}"
        if k in b.upper and k not in b.lower:
            return f"its WHERE gives {k} an upper bound but no lower bound{note}"
        others = sorted(c for c in b.seen if c != _ANY_COLUMN and c != k)
        if others:
            return f"its WHERE filters on {', '.join(others)}, not on a range of the key {k}{note}"
        return f"its WHERE does not bound the key {k} by a range{note}"

    def _data_change(self, line: int, lines: range, verb: str, table: str | None, bounded: bool, why: str,
                     st: _Sql | None, *, unknown: bool = False, source: str | None = None) -> None:
        target = table or "a table named at runtime"
        marker = self._marker(lines)
        if self.stage == "backfill" and table and st is not None:
            words = frozenset(st.words) if st.words else None
            self.backfill_refs.append((table, words, line))
        if marker and marker[1]:
            size_table = source or table
            n = self._rows_of(size_table)
            if n is not None and n > self.large_rows:
                self._add(line, "full-table-update", ERROR,
                          f"{verb} on {target} is marked allow-full-update ({marker[1]}), but {size_table} has "
                          f"about {n:,} rows (threshold {self.large_rows:,}): it is not a small table",
                          FIX_BACKFILL)
            return
        if unknown:
            self._add(line, "dynamic-sql", WARNING,
                      f"cannot check SQL built at runtime: the WHERE of this {verb} on {target} is interpolated",
                      "Write the key range out in the SQL (WHERE id BETWEEN :lo AND :hi) with only the values "
                      "interpolated, or declare the change as an erp_core.backfill Backfill.")
            return
        no_reason = ""
        if marker:
            no_reason = (f"; the allow-full-update marker on line {marker[0]} gives no reason (write e.g. "
                         f"'{ALLOW_MARKER}')")
        if not bounded:
            read = f" reading {source}" if source else ""
            self._add(line, "full-table-update", ERROR,
                      f"{verb} on {target}{read} is not batched: {why}; one statement changes every matching "
                      "row in a single transaction, locking them (PostgreSQL) or the whole database (SQLite) "
                      f"until the migration commits{no_reason}", FIX_BACKFILL)
        elif self.stage in ("expand", "contract"):
            self._add(line, "data-in-schema-stage", ERROR,
                      f"{verb} on {target} in a {self.stage} migration: data changes belong in a backfill stage, "
                      f"where the control plane batches, checkpoints and resumes them{no_reason}",
                      'Move it to a migration with stage = "backfill", declared as an erp_core.backfill '
                      f"Backfill; a small fixed table may be allowed with '{ALLOW_MARKER}' on the statement "
                      "line.")

    def _construct_root(self, call: ast.Call) -> tuple[str, str | None, list[ast.AST], str | None] | None:
        """A SQLAlchemy data change: (verb, table, where-conditions, source table) when call starts one."""
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in ("update", "delete") and not call.args:
            if self.qualname(func.value) == "alembic.op":
                return None
            receiver = func.value
            conds = self._receiver_conditions(receiver)
            table = self.table_name(receiver)
            return func.attr.upper(), table, conds + self._chain_conditions(call), None
        if call.args and self._is_sqlalchemy(call, "update", "delete"):
            verb = (self.qualname(func) or "").rsplit(".", 1)[1].upper()
            return verb, self.table_name(call.args[0]), self._chain_conditions(call), None
        if isinstance(func, ast.Attribute) and func.attr == "from_select":
            select = self.arg(call, 1, "select")
            if isinstance(select, ast.Name):
                found = self.lookup(select.id, select) or []
                values = [v for kind, v in found if kind == "value"]
                select = values[0] if len(values) == 1 else select
            conds, source = self._select_parts(select)
            return "INSERT ... SELECT", self._insert_target(func.value), conds, source
        return None

    def _insert_target(self, node: ast.AST) -> str | None:
        while isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                if node.func.attr == "insert" and not node.args:
                    return self.table_name(node.func.value)
                node = node.func.value
            else:
                return self.table_name(node.args[0]) if self._is_sqlalchemy(node, "insert") and node.args else None
        return None

    def _select_parts(self, node: ast.AST) -> tuple[list[ast.AST], str | None]:
        conds: list[ast.AST] = []
        source = None
        while isinstance(node, ast.Call):
            if self._is_sqlalchemy(node, "select"):
                for a in node.args:
                    root = a
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    source = source or self.table_name(root)
                break
            if not isinstance(node.func, ast.Attribute):
                break
            if node.func.attr in ("where", "filter"):
                conds.extend(node.args)
            elif node.func.attr == "select_from" and node.args:
                source = source or self.table_name(node.args[0])
            elif node.func.attr == "select" and not node.args:
                source = source or self.table_name(node.func.value)
            node = node.func.value
        return conds, source

    def _receiver_conditions(self, node: ast.AST) -> list[ast.AST]:
        out = []
        while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("where", "filter"):
                out.extend(node.args)
            elif node.func.attr == "filter_by":
                out.extend(node.keywords)
            node = node.func.value
        return out

    def _chain_conditions(self, call: ast.Call) -> list[ast.AST]:
        out: list[ast.AST] = []
        cur: ast.AST = call
        while True:
            p = self.parents.get(cur)
            if isinstance(p, ast.Attribute) and p.value is cur and isinstance(self.parents.get(p), ast.Call) \
                    and self.parents[p].func is p:
                c = self.parents[p]
                if p.attr in ("where", "filter"):
                    out.extend(c.args)
                elif p.attr == "filter_by":
                    out.extend(c.keywords)
                cur = c
                continue
            break
        p = self.parents.get(cur)
        if isinstance(p, ast.Assign) and len(p.targets) == 1 and isinstance(p.targets[0], ast.Name):
            name = p.targets[0].id
            for node in ast.walk(self._scope_of(p)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("where", "filter") and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == name):
                    out.extend(node.args)
        return out

    def _check_construct(self, call: ast.Call, verb: str, table: str | None, conds: list[ast.AST],
                         source: str | None) -> None:
        key_table = source if verb.startswith("INSERT") else table
        key, assumed = self._key(key_table)
        b = _Bounds()
        for c in conds:
            self._py_bounds(c, b)
        bounded = b.verdict(key)
        why = "there is no .where()" if not conds else self._why_unbounded(b, key, assumed)
        st = _Sql(verb.lower(), verb, table, source, words=frozenset(self._construct_words(call)))
        self._data_change(call.lineno, self._stmt_lines(call), verb, table, bounded, why, st,
                          unknown=b.unknown and not bounded, source=source)

    def _construct_words(self, call: ast.Call) -> set[str]:
        top: ast.AST = call
        while isinstance(self.parents.get(top), (ast.Attribute, ast.Call)):
            top = self.parents[top]
        out = set()
        for n in ast.walk(top):
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                out.update(w.lower() for w in _WORD.findall(n.value))
            elif isinstance(n, ast.Attribute):
                out.add(n.attr.lower())
            elif isinstance(n, ast.keyword) and n.arg:
                out.add(n.arg.lower())
        return out

    def _py_col(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Attribute) and node.attr not in ("c", "columns"):
            return node.attr.lower()
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr in ("c", "columns"):
            name = self.one_string(node.slice)
            return name.lower() if name else _ANY_COLUMN
        if isinstance(node, ast.Call) and self._is_sqlalchemy(node, "column", "literal_column") and node.args:
            name = self.one_string(node.args[0])
            return name.lower() if name else _ANY_COLUMN
        return None

    def _py_bounds(self, node: ast.AST, b: _Bounds, depth: int = 0) -> None:
        if depth > 8:
            b.unknown = True
            return
        if isinstance(node, ast.keyword):  # filter_by(id=...)
            if node.arg:
                b.point.add(node.arg.lower())
                b.seen.add(node.arg.lower())
            return
        if isinstance(node, ast.Call) and self._is_sqlalchemy(node, "and_"):
            for a in node.args:
                self._py_bounds(a, b, depth + 1)
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
            self._py_bounds(node.left, b, depth + 1)
            self._py_bounds(node.right, b, depth + 1)
            return
        if (isinstance(node, ast.Call) and self._is_sqlalchemy(node, "or_")) or (
                isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
            return  # an OR bounds nothing (the other conjuncts still may)
        if isinstance(node, ast.Call) and (self.qualname(node.func) or "") in _TEXT_FUNCS and node.args:
            try:
                texts = self.strings(node.args[0])
            except _Dynamic:
                b.unknown = True
                return
            for s in texts:
                toks = _tokenize(s)
                if toks:
                    _sql_bounds(toks, 0, b)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            col = self._py_col(node.func.value)
            if col and node.func.attr in ("between", "in_"):
                b.point.add(col)
                b.seen.add(col)
                return
        if isinstance(node, ast.Call) and self._is_sqlalchemy(node, "between") and node.args:
            col = self._py_col(node.args[0])
            if col:
                b.point.add(col)
                b.seen.add(col)
            return
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right, op = node.left, node.comparators[0], node.ops[0]
            col = self._py_col(left)
            if col is None or self._py_col(right) is not None:
                col = self._py_col(right)
                if col is None or self._py_col(left) is not None:
                    return
                op = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}.get(type(op), type(op))()
            b.seen.add(col)
            if isinstance(op, ast.Eq):
                b.point.add(col)
            elif isinstance(op, (ast.Lt, ast.LtE)):
                b.upper.add(col)
            elif isinstance(op, (ast.Gt, ast.GtE)):
                b.lower.add(col)
            return
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, node) or []
            values = [v for kind, v in found if kind == "value"]
            if found and len(values) == len(found):
                for v in values:
                    self._py_bounds(v, b, depth + 1)
                return
        b.unknown = True

    def _check_backfill_call(self, call: ast.Call, name: str) -> None:
        if name == "Backfill" and self.stage == "backfill":
            table = self.one_string(self.arg(call, 1, "table"))
            if table:
                words: set[str] = set()
                readable = True
                for pos, kw in ((3, "columns"), (4, "pending"), (5, "set_clause")):
                    node = self.arg(call, pos, kw)
                    if node is None:
                        continue
                    try:
                        values = self.sequence(node) if isinstance(node, (ast.Tuple, ast.List, ast.Set)) \
                            else self.strings(node)
                    except _Dynamic:
                        readable = False
                        continue
                    for v in values:
                        words.update(t.text.lower() for t in _tokenize(v) if t.kind in ("word", "qword"))
                self.backfill_refs.append((table.lower(), frozenset(words) if readable else None, call.lineno))
        # Reading progress (backfills, remaining, checkpoint, ...) is fine anywhere: a contract should
        # refuse to run while rows are pending. Declaring or running one is the backfill stage's job.
        if self.stage in ("expand", "contract") and (name == "Backfill" or name.startswith("run")):
            what = (f"declares a Backfill (erp_core.backfill.backfills() collects only those of backfill-stage "
                    f"migrations, so it would never run)" if name == "Backfill"
                    else f"runs erp_core.backfill.{name}()")
            self._add(call.lineno, "data-in-schema-stage", ERROR,
                      f"a {self.stage} migration {what}: data changes belong in a backfill stage, between the "
                      "expand that adds the columns and the contract that drops the old ones",
                      'Move the backfill to its own migration with stage = "backfill", listed in its module-level '
                      "BACKFILLS (it revises the expand, and the contract revises it).")

    # -- rule 2: rewrites and rebuilds ---------------------------------------------------------------

    def _rows_of(self, table: str | None) -> int | None:
        if self.rows is None or table is None:
            return None
        return self.rows.get(table.lower())

    def _rewrite(self, line: int, rule: str, table: str | None, what: str, why: str) -> None:
        if table is not None and table.lower() in self.created:
            return  # the same migration creates it: empty, nothing to rewrite
        target = table or "a table named at runtime"
        if self.rows is None:
            severity, size = WARNING, ("its size is unknown (give `erpctl upgrade lint` a target database "
                                       "for row estimates)")
        elif table is None or table.lower() not in self.rows:
            severity, size = WARNING, f"there is no row estimate for {target}"
        else:
            n = self.rows[table.lower()]
            if n <= self.large_rows:
                return
            severity, size = ERROR, f"{table} has about {n:,} rows (threshold {self.large_rows:,})"
        fixes = {
            "volatile-default": ("Add the column nullable, without a default (or with a constant one), in the "
                                 "expand migration; fill existing rows with an erp_core.backfill Backfill; give "
                                 "new rows their value in the application (a Python-side default)."),
            "column-type-change": ("Add a new column of the new type (expand), copy the values with an "
                                   "erp_core.backfill Backfill, switch the code to it, and drop the old column "
                                   "in a contract migration."),
            "table-rebuild": ("Avoid the rebuild: on SQLite only add_column (constant default), create_index and "
                              "drop_index run in place; do column changes as expand (new column) + backfill + "
                              "contract, and leave recreate at 'auto'. A rebuild of a small table is fine."),
        }
        self._add(line, rule, severity, f"{what} on {target}: {why}; {size}", fixes[rule])

    def _batches(self) -> dict[ast.Call, tuple[str | None, ast.Call]]:
        """Calls made on a batch_alter_table() alias -> (table, the batch_alter_table call)."""
        out = {}
        for node in ast.walk(self.tree):
            if not isinstance(node, (ast.With, ast.AsyncWith)):
                continue
            for item in node.items:
                c = item.context_expr
                if isinstance(c, ast.Call) and self._is_op(c, "batch_alter_table") and isinstance(
                        item.optional_vars, ast.Name):
                    alias = item.optional_vars.id
                    table = self.one_string(self.arg(c, 0, "table_name"))
                    for sub in node.body:
                        for n in ast.walk(sub):
                            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                                    and isinstance(n.func.value, ast.Name) and n.func.value.id == alias):
                                out[n] = (table.lower() if table else None, c)
        return out

    @staticmethod
    def _batch_groups(batches) -> dict[ast.Call, tuple[str | None, list[ast.Call]]]:
        groups: dict[ast.Call, tuple[str | None, list[ast.Call]]] = {}
        for call, (table, with_call) in batches.items():
            groups.setdefault(with_call, (table, []))[1].append(call)
        return groups

    def _check_batch(self, with_call: ast.Call, table: str | None, ops: list[ast.Call]) -> None:
        recreate = self.one_string(self.kwarg(with_call, "recreate")) or "auto"
        if recreate == "always":
            self._rewrite(with_call.lineno, "table-rebuild", table, "batch_alter_table(recreate='always')",
                          "it copies every row into a new table on every database (PostgreSQL too), holding "
                          "the table locked for the whole copy")
            return
        if recreate != "auto":
            return
        rebuilders = sorted({c.func.attr for c in ops if c.func.attr not in _BATCH_IN_PLACE
                             and not (c.func.attr == "alter_column" and self.kwarg(c, "type_") is not None)})
        if rebuilders:
            self._rewrite(with_call.lineno, "table-rebuild", table, "batch_alter_table",
                          f"on SQLite, Alembic runs {', '.join(rebuilders)} by copying the whole table into a new "
                          "one while holding the database's write lock")

    def _check_op(self, call: ast.Call, name: str, batch: tuple[str | None, ast.Call] | None) -> None:
        in_batch = batch is not None
        if name in OP_DDL and self.stage == "backfill" and not in_batch:
            self._ddl_in_backfill(call.lineno, f"op.{name}()")
        table = batch[0] if in_batch else self.one_string(self.arg(call, 0, "table_name"))
        table = table.lower() if table else None
        if name == "add_column":
            column = self.arg(call, 0 if in_batch else 1, "column")
            found = self._column_default(column)
            if found:
                col_name = self.one_string(column.args[0]) if isinstance(column, ast.Call) and column.args else None
                self._rewrite(call.lineno, "volatile-default", table, f"add_column({col_name or '?'})", found)
        elif name == "alter_column":
            column = self.one_string(self.arg(call, 0 if in_batch else 1, "column_name"))
            type_ = self.kwarg(call, "type_")
            if type_ is not None and not (isinstance(type_, ast.Constant) and type_.value is None):
                self._rewrite(call.lineno, "column-type-change", table,
                              f"alter_column({column or '?'}, type_={ast.unparse(type_)[:40]})", _TYPE_WHY)
        if self.stage == "contract" and table:
            if name in ("drop_column", "alter_column"):
                column = self.one_string(self.arg(call, 0 if in_batch else 1, "column_name"))
                self.contract_touches.append((table, column.lower() if column else None, call.lineno, name))
            elif name in ("drop_table", "rename_table") and not in_batch:
                self.contract_touches.append((table, None, call.lineno, name))

    def _column_default(self, column: ast.AST | None) -> str | None:
        """Why a Column's server default (or identity/computed) forces a rewrite, or None."""
        if isinstance(column, ast.Name):
            found = self.lookup(column.id, column) or []
            values = [v for kind, v in found if kind == "value"]
            column = values[0] if len(values) == 1 else None
        if not (isinstance(column, ast.Call) and self._is_sqlalchemy(column, "Column")):
            return None
        for a in column.args:
            if isinstance(a, ast.Call) and self._is_sqlalchemy(a, "Identity"):
                return _GENERATED_WHY
            if isinstance(a, ast.Call) and self._is_sqlalchemy(a, "Computed"):
                persisted = self.kwarg(a, "persisted")
                if not (isinstance(persisted, ast.Constant) and persisted.value is False):
                    return _GENERATED_WHY
        default = self.kwarg(column, "server_default")
        if default is None:
            return None
        if isinstance(default, ast.Call) and self._is_sqlalchemy(default, "DefaultClause") and default.args:
            default = default.args[0]
        if isinstance(default, ast.Name):
            found = self.lookup(default.id, default) or []
            values = [v for kind, v in found if kind == "value"]
            default = values[0] if len(values) == 1 else default
        if isinstance(default, ast.Call) and (self.qualname(default.func) or "") in _TEXT_FUNCS and default.args:
            try:
                texts = self.strings(default.args[0])
            except _Dynamic as d:
                return f"its server default cannot be read ({d.why}) and may be volatile"
            for s in texts:
                found = _volatile_in(_tokenize(s))
                if found:
                    return _default_why(*found)
            return None
        if isinstance(default, ast.Call):
            q = self.qualname(default.func) or ""
            if ".func." in q or (isinstance(default.func, ast.Attribute)
                                 and self.qualname(default.func.value) in ("sqlalchemy.func",
                                                                           "sqlalchemy.sql.func")):
                fname = default.func.attr.lower() if isinstance(default.func, ast.Attribute) else q
                if fname in VOLATILE_FUNCS:
                    return _default_why(f"{fname}()", True)
                if fname in STABLE_FUNCS:
                    return _default_why(f"{fname}()", False)
        return None

    def _ddl_in_backfill(self, line: int, what: str) -> None:
        self._add(line, "ddl-in-backfill", ERROR,
                  f"{what} in a backfill migration: a backfill runs in primary-key batches, each committed on "
                  "its own while the ERP serves; DDL in it holds its locks for the whole backfill (PostgreSQL) "
                  "and cannot be resumed batch by batch",
                  "Move the schema change to the expand migration before this backfill (or the contract after "
                  "it); keep the backfill to erp_core.backfill declarations.")


# ---- across migrations: the revision chain and stage order -------------------------------------

def _chain_findings(modules: list[_Module]) -> list[Finding]:
    out: list[Finding] = []

    def add(m: _Module, line: int, rule: str, message: str, fix: str) -> None:
        out.append(Finding(str(m.path), line, m.revision, rule, ERROR, message, fix))

    by_rev: dict[str, _Module] = {}
    for m in modules:
        if m.tree is None:
            continue
        if m.revision is None:
            add(m, 1, "revision-chain", "the migration has no module-level revision = '...'",
                "Give it a unique revision id and a down_revision naming the migration it follows.")
        elif m.revision in by_rev:
            add(m, m.revision_line, "revision-chain",
                f"revision {m.revision!r} is also declared by {by_rev[m.revision].path.name}",
                "Give each migration a unique revision id.")
        else:
            by_rev[m.revision] = m
    for m in by_rev.values():
        for d in m.down_revisions:
            if d not in by_rev:
                add(m, m.down_line, "revision-chain", f"down_revision {d!r} is not a migration in this directory",
                    "Set down_revision to the revision this migration follows.")
    parents_of = {r: m.down_revisions for r, m in by_rev.items()}
    referenced = {d for ds in parents_of.values() for d in ds}
    heads = sorted(r for r in by_rev if r not in referenced)
    if len(heads) > 1:
        for r in heads:
            add(by_rev[r], by_rev[r].revision_line, "revision-chain",
                f"the revision chain has {len(heads)} heads ({', '.join(heads)}), so the stage order is undefined",
                "Make one follow the other (down_revision), or merge them with 'alembic merge'.")

    def ancestors(rev: str) -> set[str]:
        seen, stack = set(), list(parents_of.get(rev, ()))
        while stack:
            r = stack.pop()
            if r not in seen:
                seen.add(r)
                stack.extend(parents_of.get(r, ()))
        return seen

    backfills = [m for m in by_rev.values() if m.stage == "backfill"]
    for c in by_rev.values():
        if c.stage != "contract":
            continue
        before = ancestors(c.revision)
        for table, column, line, what in c.contract_touches:
            for b in backfills:
                if b.revision in before:
                    continue
                for b_table, words, b_line in b.backfill_refs:
                    if b_table != table or (column is not None and words is not None and column not in words):
                        continue
                    thing = f"{table}.{column}" if column else f"table {table}"
                    add(c, line, "stage-order",
                        f"contract {c.revision} ({what}) changes {thing}, which backfill {b.revision} "
                        f"({b.path.name}:{b_line}) reads or writes, but that backfill does not come before "
                        "this contract in the revision chain",
                        f"Order the chain expand -> backfill -> contract: make {c.revision} follow {b.revision} "
                        "(down_revision), so the backfill has run before the contract removes what it needs.")
                    break
    return out
