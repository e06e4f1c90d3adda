"""Linting a versions directory: every migration file read (first pass: headers, created tables,
primary keys), then each linted against the keys all of them declare, then the checks across
migrations; one report with the findings in file and line order."""

from __future__ import annotations

import ast
from pathlib import Path

from erp_core.errors import ValidationFailed

from .chain import chain_findings
from .data_rules import DataRules
from .estimates import TableSizes
from .findings import DEFAULT_LARGE_ROWS, WARNING, Finding, LintReport, Migration
from .migration import MigrationFile
from .pyeval import kwarg
from .schema_rules import SchemaRules
from .sql_statements import analyse_sql


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
    sizes = TableSizes.of(rows, large_rows)
    files = []
    for path in sorted(versions_dir.glob("*.py")):
        if path.name == "__init__.py":
            continue
        m = MigrationFile(path)
        if m.is_migration:
            files.append(m)
    if not files:
        raise ValidationFailed(f"{versions_dir} holds no Alembic migrations (Python files with a module-level "
                               "revision = ... and an upgrade() function)", field="versions_dir",
                               fix="Point --versions-dir at the versions/ directory itself, not at the "
                                   "migrations/ directory above it.")
    keys: dict[str, tuple[str, ...]] = {}
    for m in files:
        keys.update(m.primary_keys)
    findings: list[Finding] = []
    for m in files:
        if m.tree is not None:
            FileLint(m, keys, sizes).run()
        findings.extend(m.findings)
    findings.extend(chain_findings(files))
    unique = sorted(set(findings), key=lambda f: (f.path, f.line, f.rule, f.message))
    migrations = tuple(Migration(str(m.path), m.revision, m.down_revisions, m.stage, m.doc) for m in files)
    return LintReport(str(versions_dir), migrations, tuple(unique), large_rows)


class FileLint:
    """The rules over one parsed migration: each call of the module is looked at once and handed to
    the rules that care about it."""

    def __init__(self, m: MigrationFile, keys: dict[str, tuple[str, ...]], sizes: TableSizes):
        self.m = m
        self.v = m.values
        self.data = DataRules(m, keys, sizes)
        self.schema = SchemaRules(m, sizes)

    def run(self) -> None:
        self.schema.check_stage()
        batches = self.schema.batches()
        for node in ast.walk(self.m.tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            method = func.attr if isinstance(func, ast.Attribute) else None
            op_name = self.v.is_op(node)
            batch = batches.get(node)
            if method in ("execute", "exec_driver_sql") and op_name in (None, "execute") and (
                    node.args or kwarg(node, "sqltext") is not None):
                self.check_execute(node)
            root = self.data.construct_root(node)
            if root:
                self.data.check_construct(node, *root)
            if op_name and op_name != "execute":
                self.schema.check_op(node, op_name, None)
            elif batch is not None and method:
                self.schema.check_op(node, method, batch)
            q = self.v.qualname(func) or ""
            if q.startswith("erp_core.backfill."):
                self.data.check_backfill_call(node, q.rsplit(".", 1)[1])
        self.schema.check_batches(batches)

    def check_execute(self, call: ast.Call) -> None:
        """SQL text given to execute(): each statement to the data or the schema rules."""
        arg = call.args[0] if call.args else kwarg(call, "sqltext")
        kind, texts = self.v.sql_of(arg)
        line = call.lineno
        if kind == "dynamic":
            self.m.add(line, "dynamic-sql", WARNING,
                       f"cannot check SQL built at runtime: {texts[0]}",
                       "Write the SQL as a string constant (or an f-string with only values interpolated) so "
                       "it can be checked before it runs; a data change belongs in an erp_core.backfill "
                       "Backfill.")
            return
        lines = self.v.stmt_lines(call)
        for s in texts:
            for st in analyse_sql(s):
                if st.kind == "ddl":
                    self.schema.check_ddl_sql(st, line)
                else:
                    self.data.check_sql(st, line, lines)
