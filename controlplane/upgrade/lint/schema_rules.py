"""The rules on schema changes: volatile-default, column-type-change and table-rebuild (a change
that rewrites or copies a whole table: an error on a large table, a warning when its size is
unknown), ddl-in-backfill, stage-declaration; and what a contract migration drops, alters or
renames, remembered for the stage-order rule."""

from __future__ import annotations

import ast

from erp_core.ops import STAGES

from .estimates import TableSizes
from .findings import ERROR, WARNING
from .migration import MigrationFile
from .pyeval import TEXT_FUNCS, Dynamic, arg, kwarg
from .sql_statements import GENERATED_WHY, STABLE_FUNCS, TYPE_WHY, VOLATILE_FUNCS, Sql, default_why, volatile_in
from .sql_tokens import tokenize

OP_DDL = {"add_column", "drop_column", "alter_column", "create_table", "drop_table", "rename_table",
          "create_index", "drop_index", "create_foreign_key", "create_unique_constraint",
          "create_check_constraint", "create_primary_key", "create_exclude_constraint", "drop_constraint",
          "create_table_comment", "drop_table_comment", "batch_alter_table"}
# What Alembic can do on SQLite inside a batch without copying the table (alembic.ddl.sqlite).
_BATCH_IN_PLACE = {"add_column", "create_index", "drop_index", "f"}
_REWRITE_FIXES = {
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

Batch = tuple[str | None, ast.Call]  # the table of a batch_alter_table() and that call


class SchemaRules:
    """The schema-change rules over one migration."""

    def __init__(self, m: MigrationFile, sizes: TableSizes):
        self.m = m
        self.v = m.values
        self.sizes = sizes

    def check_stage(self) -> None:
        fix = ('Declare the stage at module level: stage = "expand" (additive; old code keeps working), '
               '"backfill" (data only, declared through erp_core.backfill) or "contract" (removes what old '
               "code needed; runs after the new code is everywhere).")
        m = self.m
        if not m.stage_declared:
            m.add(1, "stage-declaration", ERROR, "the migration declares no stage", fix)
        elif m.stage not in STAGES:
            shown = repr(m.stage) if m.stage is not None else "a value computed at runtime"
            m.add(m.stage_node.lineno, "stage-declaration", ERROR, f"stage is {shown}, not one of {', '.join(STAGES)}",
                  fix)

    def check_ddl_sql(self, st: Sql, line: int) -> None:
        """A DDL statement of SQL text given to execute()."""
        if self.m.stage == "backfill":
            self.ddl_in_backfill(line, f"op.execute({st.verb} ...)")
        for rule, table, what, why in st.rewrites:
            self._rewrite(line, rule, table, what, why)
        if self.m.stage == "contract":
            for table, column, what in st.touches:
                if table:
                    self.m.contract_touches.append((table, column, line, what))

    def _rewrite(self, line: int, rule: str, table: str | None, what: str, why: str) -> None:
        """A change that rewrites or copies the whole table: reported by the table's size."""
        if table is not None and table.lower() in self.m.created:
            return  # the same migration creates it: empty, nothing to rewrite
        target = table or "a table named at runtime"
        rows, large = self.sizes.rows, self.sizes.large_rows
        if rows is None:
            severity, size = WARNING, ("its size is unknown (give `erpctl upgrade lint` a target database "
                                       "for row estimates)")
        elif table is None or table.lower() not in rows:
            severity, size = WARNING, f"there is no row estimate for {target}"
        else:
            n = rows[table.lower()]
            if n <= large:
                return
            severity, size = ERROR, f"{table} has about {n:,} rows (threshold {large:,})"
        self.m.add(line, rule, severity, f"{what} on {target}: {why}; {size}", _REWRITE_FIXES[rule])

    def batches(self) -> dict[ast.Call, Batch]:
        """Calls made on a batch_alter_table() alias -> (table, the batch_alter_table call)."""
        out = {}
        for node in ast.walk(self.m.tree):
            if not isinstance(node, (ast.With, ast.AsyncWith)):
                continue
            for item in node.items:
                c = item.context_expr
                if isinstance(c, ast.Call) and self.v.is_op(c, "batch_alter_table") and isinstance(
                        item.optional_vars, ast.Name):
                    alias = item.optional_vars.id
                    table = self.v.one_string(arg(c, 0, "table_name"))
                    for sub in node.body:
                        for n in ast.walk(sub):
                            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                                    and isinstance(n.func.value, ast.Name) and n.func.value.id == alias):
                                out[n] = (table.lower() if table else None, c)
        return out

    def check_batches(self, batches: dict[ast.Call, Batch]) -> None:
        """table-rebuild for each batch_alter_table(), by the operations run in it."""
        groups: dict[ast.Call, tuple[str | None, list[ast.Call]]] = {}
        for call, (table, with_call) in batches.items():
            groups.setdefault(with_call, (table, []))[1].append(call)
        for with_call, (table, ops) in groups.items():
            self._check_batch(with_call, table, ops)

    def _check_batch(self, with_call: ast.Call, table: str | None, ops: list[ast.Call]) -> None:
        recreate = self.v.one_string(kwarg(with_call, "recreate")) or "auto"
        if recreate == "always":
            self._rewrite(with_call.lineno, "table-rebuild", table, "batch_alter_table(recreate='always')",
                          "it copies every row into a new table on every database (PostgreSQL too), holding "
                          "the table locked for the whole copy")
            return
        if recreate != "auto":
            return
        rebuilders = sorted({c.func.attr for c in ops if c.func.attr not in _BATCH_IN_PLACE
                             and not (c.func.attr == "alter_column" and kwarg(c, "type_") is not None)})
        if rebuilders:
            self._rewrite(with_call.lineno, "table-rebuild", table, "batch_alter_table",
                          f"on SQLite, Alembic runs {', '.join(rebuilders)} by copying the whole table into a new "
                          "one while holding the database's write lock")

    def check_op(self, call: ast.Call, name: str, batch: Batch | None) -> None:
        """An alembic.op call (or a batch's, when batch is given)."""
        in_batch = batch is not None
        if name in OP_DDL and self.m.stage == "backfill" and not in_batch:
            self.ddl_in_backfill(call.lineno, f"op.{name}()")
        table = batch[0] if in_batch else self.v.one_string(arg(call, 0, "table_name"))
        table = table.lower() if table else None
        if name == "add_column":
            column = arg(call, 0 if in_batch else 1, "column")
            found = self._column_default(column)
            if found:
                col_name = self.v.one_string(column.args[0]) if isinstance(column, ast.Call) and column.args else None
                self._rewrite(call.lineno, "volatile-default", table, f"add_column({col_name or '?'})", found)
        elif name == "alter_column":
            column = self.v.one_string(arg(call, 0 if in_batch else 1, "column_name"))
            type_ = kwarg(call, "type_")
            if type_ is not None and not (isinstance(type_, ast.Constant) and type_.value is None):
                self._rewrite(call.lineno, "column-type-change", table,
                              f"alter_column({column or '?'}, type_={ast.unparse(type_)[:40]})", TYPE_WHY)
        if self.m.stage == "contract" and table:
            if name in ("drop_column", "alter_column"):
                column = self.v.one_string(arg(call, 0 if in_batch else 1, "column_name"))
                self.m.contract_touches.append((table, column.lower() if column else None, call.lineno, name))
            elif name in ("drop_table", "rename_table") and not in_batch:
                self.m.contract_touches.append((table, None, call.lineno, name))

    def _column_default(self, column: ast.AST | None) -> str | None:
        """Why a Column's server default (or identity/computed) forces a rewrite, or None."""
        if isinstance(column, ast.Name):
            found = self.v.lookup(column.id, column) or []
            values = [value for kind, value in found if kind == "value"]
            column = values[0] if len(values) == 1 else None
        if not (isinstance(column, ast.Call) and self.v.is_sqlalchemy(column, "Column")):
            return None
        for a in column.args:
            if isinstance(a, ast.Call) and self.v.is_sqlalchemy(a, "Identity"):
                return GENERATED_WHY
            if isinstance(a, ast.Call) and self.v.is_sqlalchemy(a, "Computed"):
                persisted = kwarg(a, "persisted")
                if not (isinstance(persisted, ast.Constant) and persisted.value is False):
                    return GENERATED_WHY
        default = kwarg(column, "server_default")
        if default is None:
            return None
        if isinstance(default, ast.Call) and self.v.is_sqlalchemy(default, "DefaultClause") and default.args:
            default = default.args[0]
        if isinstance(default, ast.Name):
            found = self.v.lookup(default.id, default) or []
            values = [value for kind, value in found if kind == "value"]
            default = values[0] if len(values) == 1 else default
        if isinstance(default, ast.Call) and (self.v.qualname(default.func) or "") in TEXT_FUNCS and default.args:
            try:
                texts = self.v.strings(default.args[0])
            except Dynamic as d:
                return f"its server default cannot be read ({d.why}) and may be volatile"
            for s in texts:
                found = volatile_in(tokenize(s))
                if found:
                    return default_why(*found)
            return None
        if isinstance(default, ast.Call):
            q = self.v.qualname(default.func) or ""
            if ".func." in q or (isinstance(default.func, ast.Attribute)
                                 and self.v.qualname(default.func.value) in ("sqlalchemy.func",
                                                                             "sqlalchemy.sql.func")):
                fname = default.func.attr.lower() if isinstance(default.func, ast.Attribute) else q
                if fname in VOLATILE_FUNCS:
                    return default_why(f"{fname}()", True)
                if fname in STABLE_FUNCS:
                    return default_why(f"{fname}()", False)
        return None

    def ddl_in_backfill(self, line: int, what: str) -> None:
        self.m.add(line, "ddl-in-backfill", ERROR,
                   f"{what} in a backfill migration: a backfill runs in primary-key batches, each committed on "
                   "its own while the ERP serves; DDL in it holds its locks for the whole backfill (PostgreSQL) "
                   "and cannot be resumed batch by batch",
                   "Move the schema change to the expand migration before this backfill (or the contract after "
                   "it); keep the backfill to erp_core.backfill declarations.")

