"""One migration file, parsed once: its header (revision, down_revision, stage, docstring), the
tables it creates and the primary keys it declares (a first pass, before any rule runs), and the
findings the rules add to it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .findings import ERROR, Finding
from .pyeval import StaticValues, arg, kwarg
from .sql_statements import analyse_sql

_MARKER = re.compile(r"#\s*lint:\s*allow-full-update\b(?P<reason>[^#\n]*)")


class MigrationFile:
    """A file of a versions directory. `tree` is None when it does not parse (a syntax finding is
    then its only one); `is_migration` is False for a helper module without a revision or upgrade()."""

    def __init__(self, path: Path):
        self.path = path
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
        # what the rules learn for the checks across migrations (chain.py):
        self.contract_touches: list[tuple[str, str | None, int, str]] = []  # table, column, line, what
        self.backfill_refs: list[tuple[str, frozenset[str] | None, int]] = []  # table, words read, line
        try:
            self.source = path.read_text(encoding="utf-8")
            self.tree = ast.parse(self.source, filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
            line = getattr(exc, "lineno", None) or 1
            self.tree = None
            self.source = ""
            self.is_migration = True
            self.add(line, "syntax", ERROR, f"cannot parse the migration: {exc.__class__.__name__}: "
                     f"{getattr(exc, 'msg', exc)}", "Fix the Python syntax; a migration that does not parse "
                     "cannot be applied either.")
            return
        self.lines = self.source.splitlines()
        self.values = StaticValues(self.tree)
        doc = (ast.get_docstring(self.tree) or "").strip()
        self.doc = doc.splitlines()[0] if doc else None
        self._read_header()
        has_upgrade = any(isinstance(n, ast.FunctionDef) and n.name == "upgrade" for n in self.tree.body)
        self.is_migration = has_upgrade or self.revision is not None
        if self.is_migration:
            self._collect_schema()

    def add(self, line: int, rule: str, severity: str, message: str, fix: str) -> None:
        self.findings.append(Finding(str(self.path), int(line), self.revision, rule, severity, message, fix))

    def marker(self, lines) -> tuple[int, str] | None:
        """The allow-full-update marker on one of lines: (its line, its reason)."""
        for ln in lines:
            if 0 < ln <= len(self.lines) and (m := _MARKER.search(self.lines[ln - 1])):
                return ln, m.group("reason").strip()
        return None

    # -- header: revision, down_revision, stage -----------------------------------------------------

    def _read_header(self) -> None:
        for node in self.tree.body:
            targets, value = [], None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            for t in targets:
                if isinstance(t, ast.Name):
                    self._header_name(t.id, node, value)

    def _header_name(self, name: str, node: ast.stmt, value: ast.AST) -> None:
        if name == "revision" and isinstance(value, ast.Constant) and isinstance(value.value, str):
            self.revision, self.revision_line = value.value, node.lineno
        elif name == "down_revision":
            self.down_line = node.lineno
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                self.down_revisions = (value.value,)
            elif isinstance(value, (ast.Tuple, ast.List)):
                self.down_revisions = tuple(e.value for e in value.elts if isinstance(e, ast.Constant)
                                            and isinstance(e.value, str))
        elif name == "stage":
            self.stage_declared = True
            self.stage_node = node
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                self.stage = value.value

    # -- first pass: what the schema looks like ------------------------------------------------------

    def _collect_schema(self) -> None:
        v = self.values
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            name = v.is_op(node)
            if name == "create_table":
                table = v.one_string(arg(node, 0, "table_name"))
                if table:
                    self.created.add(table.lower())
                    pk = self._table_pk(node)
                    if pk:
                        self.primary_keys[table.lower()] = pk
            elif name == "create_primary_key":
                table = v.one_string(arg(node, 1, "table_name"))
                cols = arg(node, 2, "columns")
                if table and isinstance(cols, (ast.List, ast.Tuple)):
                    got = tuple(c for c in (v.one_string(e) for e in cols.elts) if c)
                    if got:
                        self.primary_keys[table.lower()] = tuple(c.lower() for c in got)
            elif name == "execute" and node.args:
                kind, texts = v.sql_of(node.args[0])
                for s in texts if kind == "sql" else ():
                    for st in analyse_sql(s):
                        if st.creates:
                            self.created.add(st.creates)

    def _table_pk(self, call: ast.Call) -> tuple[str, ...]:
        v = self.values
        cols = []
        for a in call.args[1:]:
            if not isinstance(a, ast.Call):
                continue
            if v.is_sqlalchemy(a, "PrimaryKeyConstraint"):
                return tuple(c.lower() for c in (v.one_string(e) for e in a.args) if c)
            if v.is_sqlalchemy(a, "Column"):
                pk = kwarg(a, "primary_key")
                if isinstance(pk, ast.Constant) and pk.value is True and a.args:
                    name = v.one_string(a.args[0])
                    if name:
                        cols.append(name.lower())
        return tuple(cols)
