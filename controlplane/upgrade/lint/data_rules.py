"""The rules on data changes: full-table-update (a change not batched by a key range),
data-in-schema-stage (a data change, or a backfill declared or run, in an expand or contract
migration) and dynamic-sql (a statement or WHERE the linter cannot read). Data changes come as
SQL text given to execute() or as SQLAlchemy constructs; a backfill migration's changes are also
remembered (table, the names they mention) for the stage-order rule."""

from __future__ import annotations

import ast

from .constructs import Constructs, Root
from .estimates import TableSizes
from .findings import ERROR, WARNING
from .migration import MigrationFile
from .pyeval import Dynamic, arg
from .sql_bounds import Bounds, sql_bounds
from .sql_statements import Sql
from .sql_tokens import tokenize

ALLOW_MARKER = "# lint: allow-full-update small-table"
FIX_BACKFILL = (
    "Declare the change as erp_core.backfill.Backfill(name, table, key, columns, pending, set_clause) in a "
    'migration with stage = "backfill"; the control plane runs it in primary-key batches while the ERP serves. '
    "Or bound this statement by a key range (WHERE id BETWEEN :lo AND :hi) inside a batching loop. "
    f"A small fixed table may be allowed with a marker comment on the statement line: '{ALLOW_MARKER}'.")


class DataRules:
    """The data-change rules over one migration, with the primary keys every migration declares."""

    def __init__(self, m: MigrationFile, keys: dict[str, tuple[str, ...]], sizes: TableSizes):
        self.m = m
        self.keys = keys
        self.sizes = sizes
        self.constructs = Constructs(m.values)

    def check_sql(self, st: Sql, line: int, lines: range) -> None:
        """A statement of SQL text (not DDL: see SchemaRules.check_ddl_sql)."""
        if st.kind == "unknown":
            self.m.add(line, "dynamic-sql", WARNING, f"cannot check SQL built at runtime: {st.verb}",
                       "Write the statement out as SQL text the linter can read; a data change belongs in an "
                       "erp_core.backfill Backfill.")
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
            b = Bounds()
            sql_bounds(st.where, 0, b)
            bounded = b.verdict(key)
            unknown = b.unknown and not bounded
            why = b.why_unbounded(key, assumed)
        self._data_change(line, lines, st.verb, st.table, bounded, why, st, unknown=unknown, source=st.source)

    def construct_root(self, call: ast.Call) -> Root | None:
        return self.constructs.root(call)

    def check_construct(self, call: ast.Call, verb: str, table: str | None, conds: list[ast.AST],
                        source: str | None) -> None:
        key_table = source if verb.startswith("INSERT") else table
        key, assumed = self._key(key_table)
        b = Bounds()
        for c in conds:
            self.constructs.bounds(c, b)
        bounded = b.verdict(key)
        why = "there is no .where()" if not conds else b.why_unbounded(key, assumed)
        st = Sql(verb.lower(), verb, table, source, words=frozenset(self.constructs.words(call)))
        self._data_change(call.lineno, self.m.values.stmt_lines(call), verb, table, bounded, why, st,
                          unknown=b.unknown and not bounded, source=source)

    def _key(self, table: str | None) -> tuple[tuple[str, ...], bool]:
        pk = self.keys.get(table or "")
        if pk:
            return (pk[0],), False
        return ("id",), True

    def _data_change(self, line: int, lines: range, verb: str, table: str | None, bounded: bool, why: str,
                     st: Sql | None, *, unknown: bool = False, source: str | None = None) -> None:
        m = self.m
        target = table or "a table named at runtime"
        marker = m.marker(lines)
        if m.stage == "backfill" and table and st is not None:
            words = frozenset(st.words) if st.words else None
            m.backfill_refs.append((table, words, line))
        if marker and marker[1]:
            self._marked_change(line, verb, target, source or table, marker[1])
            return
        if unknown:
            m.add(line, "dynamic-sql", WARNING,
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
            m.add(line, "full-table-update", ERROR,
                  f"{verb} on {target}{read} is not batched: {why}; one statement changes every matching "
                  "row in a single transaction, locking them (PostgreSQL) or the whole database (SQLite) "
                  f"until the migration commits{no_reason}", FIX_BACKFILL)
        elif m.stage in ("expand", "contract"):
            m.add(line, "data-in-schema-stage", ERROR,
                  f"{verb} on {target} in a {m.stage} migration: data changes belong in a backfill stage, "
                  f"where the control plane batches, checkpoints and resumes them{no_reason}",
                  'Move it to a migration with stage = "backfill", declared as an erp_core.backfill '
                  f"Backfill; a small fixed table may be allowed with '{ALLOW_MARKER}' on the statement "
                  "line.")

    def _marked_change(self, line: int, verb: str, target: str, size_table: str | None, reason: str) -> None:
        """A change marked allow-full-update (with a reason): still an error on a large table."""
        n = self.sizes.rows_of(size_table)
        large = self.sizes.large_rows
        if n is not None and n > large:
            self.m.add(line, "full-table-update", ERROR,
                       f"{verb} on {target} is marked allow-full-update ({reason}), but {size_table} has "
                       f"about {n:,} rows (threshold {large:,}): it is not a small table", FIX_BACKFILL)

    def check_backfill_call(self, call: ast.Call, name: str) -> None:
        """A call of erp_core.backfill.<name>: a Backfill declared, or a backfill run or read."""
        m = self.m
        if name == "Backfill" and m.stage == "backfill":
            self._remember_backfill(call)
        # Reading progress (backfills, remaining, checkpoint, ...) is fine anywhere: a contract should
        # refuse to run while rows are pending. Declaring or running one is the backfill stage's job.
        if m.stage in ("expand", "contract") and (name == "Backfill" or name.startswith("run")):
            what = (f"declares a Backfill (erp_core.backfill.backfills() collects only those of backfill-stage "
                    f"migrations, so it would never run)" if name == "Backfill"
                    else f"runs erp_core.backfill.{name}()")
            m.add(call.lineno, "data-in-schema-stage", ERROR,
                  f"a {m.stage} migration {what}: data changes belong in a backfill stage, between the "
                  "expand that adds the columns and the contract that drops the old ones",
                  'Move the backfill to its own migration with stage = "backfill", listed in its module-level '
                  "BACKFILLS (it revises the expand, and the contract revises it).")

    def _remember_backfill(self, call: ast.Call) -> None:
        """A Backfill(...) declaration: its table and the names its columns, pending and set_clause
        mention (None when one of them cannot be read), for the stage-order rule."""
        v = self.m.values
        table = v.one_string(arg(call, 1, "table"))
        if not table:
            return
        words: set[str] = set()
        readable = True
        for pos, kw in ((3, "columns"), (4, "pending"), (5, "set_clause")):
            node = arg(call, pos, kw)
            if node is None:
                continue
            try:
                values = v.sequence(node) if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else v.strings(node)
            except Dynamic:
                readable = False
                continue
            for value in values:
                words.update(t.text.lower() for t in tokenize(value) if t.kind in ("word", "qword"))
        self.m.backfill_refs.append((table.lower(), frozenset(words) if readable else None, call.lineno))
