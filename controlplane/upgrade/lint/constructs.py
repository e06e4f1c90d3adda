"""SQLAlchemy statements built in Python (sa.update(t).where(...), t.delete(), insert().from_select()):
which data change a call starts, the table it writes or reads, and how its where()/filter()
conditions bound the key (read into the same Bounds as a SQL WHERE)."""

from __future__ import annotations

import ast

from .pyeval import TEXT_FUNCS, Dynamic, StaticValues, arg
from .sql_bounds import ANY_COLUMN, Bounds, sql_bounds
from .sql_tokens import WORD, tokenize

Root = tuple[str, str | None, list[ast.AST], str | None]  # verb, table, where-conditions, source table


class Constructs:
    """The SQLAlchemy statements of one module (read through its StaticValues)."""

    def __init__(self, values: StaticValues):
        self.v = values

    def root(self, call: ast.Call) -> Root | None:
        """A SQLAlchemy data change: (verb, table, where-conditions, source table) when call starts one."""
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in ("update", "delete") and not call.args:
            if self.v.qualname(func.value) == "alembic.op":
                return None
            receiver = func.value
            conds = self._receiver_conditions(receiver)
            table = self.v.table_name(receiver)
            return func.attr.upper(), table, conds + self._chain_conditions(call), None
        if call.args and self.v.is_sqlalchemy(call, "update", "delete"):
            verb = (self.v.qualname(func) or "").rsplit(".", 1)[1].upper()
            return verb, self.v.table_name(call.args[0]), self._chain_conditions(call), None
        if isinstance(func, ast.Attribute) and func.attr == "from_select":
            select = arg(call, 1, "select")
            if isinstance(select, ast.Name):
                found = self.v.lookup(select.id, select) or []
                values = [value for kind, value in found if kind == "value"]
                select = values[0] if len(values) == 1 else select
            conds, source = self._select_parts(select)
            return "INSERT ... SELECT", self._insert_target(func.value), conds, source
        return None

    def _insert_target(self, node: ast.AST) -> str | None:
        while isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                if node.func.attr == "insert" and not node.args:
                    return self.v.table_name(node.func.value)
                node = node.func.value
            else:
                return self.v.table_name(node.args[0]) if self.v.is_sqlalchemy(node, "insert") and node.args else None
        return None

    def _select_parts(self, node: ast.AST) -> tuple[list[ast.AST], str | None]:
        conds: list[ast.AST] = []
        source = None
        while isinstance(node, ast.Call):
            if self.v.is_sqlalchemy(node, "select"):
                for a in node.args:
                    root = a
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    source = source or self.v.table_name(root)
                break
            if not isinstance(node.func, ast.Attribute):
                break
            if node.func.attr in ("where", "filter"):
                conds.extend(node.args)
            elif node.func.attr == "select_from" and node.args:
                source = source or self.v.table_name(node.args[0])
            elif node.func.attr == "select" and not node.args:
                source = source or self.v.table_name(node.func.value)
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
            p = self.v.parents.get(cur)
            if isinstance(p, ast.Attribute) and p.value is cur and isinstance(self.v.parents.get(p), ast.Call) \
                    and self.v.parents[p].func is p:
                c = self.v.parents[p]
                if p.attr in ("where", "filter"):
                    out.extend(c.args)
                elif p.attr == "filter_by":
                    out.extend(c.keywords)
                cur = c
                continue
            break
        p = self.v.parents.get(cur)
        if isinstance(p, ast.Assign) and len(p.targets) == 1 and isinstance(p.targets[0], ast.Name):
            name = p.targets[0].id
            for node in ast.walk(self.v.scope_of(p)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("where", "filter") and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == name):
                    out.extend(node.args)
        return out

    def words(self, call: ast.Call) -> set[str]:
        """The names a statement mentions (lower-cased), for the stage-order rule."""
        top: ast.AST = call
        while isinstance(self.v.parents.get(top), (ast.Attribute, ast.Call)):
            top = self.v.parents[top]
        out = set()
        for n in ast.walk(top):
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                out.update(w.lower() for w in WORD.findall(n.value))
            elif isinstance(n, ast.Attribute):
                out.add(n.attr.lower())
            elif isinstance(n, ast.keyword) and n.arg:
                out.add(n.arg.lower())
        return out

    def _col(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Attribute) and node.attr not in ("c", "columns"):
            return node.attr.lower()
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr in ("c", "columns"):
            name = self.v.one_string(node.slice)
            return name.lower() if name else ANY_COLUMN
        if isinstance(node, ast.Call) and self.v.is_sqlalchemy(node, "column", "literal_column") and node.args:
            name = self.v.one_string(node.args[0])
            return name.lower() if name else ANY_COLUMN
        return None

    def bounds(self, node: ast.AST, b: Bounds, depth: int = 0) -> None:
        """Read one where()/filter() condition (or filter_by keyword) into b."""
        if depth > 8:
            b.unknown = True
            return
        if isinstance(node, ast.keyword):  # filter_by(id=...)
            if node.arg:
                b.point.add(node.arg.lower())
                b.seen.add(node.arg.lower())
            return
        if isinstance(node, ast.Call) and self.v.is_sqlalchemy(node, "and_"):
            for a in node.args:
                self.bounds(a, b, depth + 1)
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
            self.bounds(node.left, b, depth + 1)
            self.bounds(node.right, b, depth + 1)
            return
        if (isinstance(node, ast.Call) and self.v.is_sqlalchemy(node, "or_")) or (
                isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
            return  # an OR bounds nothing (the other conjuncts still may)
        if isinstance(node, ast.Call) and (self.v.qualname(node.func) or "") in TEXT_FUNCS and node.args:
            try:
                texts = self.v.strings(node.args[0])
            except Dynamic:
                b.unknown = True
                return
            for s in texts:
                toks = tokenize(s)
                if toks:
                    sql_bounds(toks, 0, b)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            col = self._col(node.func.value)
            if col and node.func.attr in ("between", "in_"):
                b.point.add(col)
                b.seen.add(col)
                return
        if isinstance(node, ast.Call) and self.v.is_sqlalchemy(node, "between") and node.args:
            col = self._col(node.args[0])
            if col:
                b.point.add(col)
                b.seen.add(col)
            return
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right, op = node.left, node.comparators[0], node.ops[0]
            col = self._col(left)
            if col is None or self._col(right) is not None:
                col = self._col(right)
                if col is None or self._col(left) is not None:
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
            found = self.v.lookup(node.id, node) or []
            values = [v for kind, v in found if kind == "value"]
            if found and len(values) == len(found):
                for v in values:
                    self.bounds(v, b, depth + 1)
                return
        b.unknown = True
