"""The Python side of a migration, read without running it: what its names are bound to (per
function scope), which imported function a call is (alembic.op.execute, sqlalchemy.text, ...), and
every text a string expression can have -- constants, names assigned in the same function or
module, concatenation, `%`/`.format()`, f-strings and joins. A value interpolated at runtime that
cannot be read becomes a placeholder (sql_tokens.DYN), enough to see a statement's shape.
"""

from __future__ import annotations

import ast
import itertools
import re

from .sql_tokens import DYN

TEXT_FUNCS = {"sqlalchemy.text", "sqlalchemy.sql.text", "sqlalchemy.sql.expression.text", "sqlalchemy.DDL",
              "sqlalchemy.schema.DDL", "sqlalchemy.literal_column", "sqlalchemy.sql.literal_column",
              "sqlalchemy.sql.expression.literal_column"}
_CONSTRUCT_METHODS = {"update", "delete", "insert", "select", "where", "values", "from_select", "returning",
                      "filter", "filter_by", "join", "select_from", "order_by", "limit", "subquery", "cte",
                      "with_only_columns", "scalar_subquery", "ordered_values", "inline", "on_conflict_do_nothing",
                      "on_conflict_do_update", "prefix_with"}
_TEXT_WRAPPERS = {"bindparams", "columns", "execution_options"}
_MAX_CANDIDATES = 32


class Dynamic(Exception):
    """A value the linter cannot read statically."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _placeholder(n: int) -> str:
    return f"{DYN}{n}{DYN}"


def arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
    """A call's argument given by keyword or at position pos."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return call.args[pos] if len(call.args) > pos else None


def kwarg(call: ast.Call, name: str) -> ast.AST | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


class StaticValues:
    """What the expressions of one parsed module stand for, as far as reading the source tells."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.imports = self._imports()
        self._scopes: dict[ast.AST, dict[str, list]] = {}
        self._n = 0

    # -- imports: which function a name stands for ---------------------------------------------------

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

    def is_op(self, call: ast.Call, *names: str) -> str | None:
        """The alembic.op function a call is (op.add_column(...)), if it is one of names (or any)."""
        q = self.qualname(call.func)
        if q and q.startswith("alembic.op."):
            name = q.rsplit(".", 1)[1]
            if not names or name in names:
                return name
        return None

    def is_sqlalchemy(self, call: ast.Call, *names: str) -> bool:
        q = self.qualname(call.func) or ""
        return q.startswith("sqlalchemy") and q.rsplit(".", 1)[-1] in names

    # -- scopes and static values -----------------------------------------------------------------

    def scope_of(self, node: ast.AST) -> ast.AST:
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
        scope = self.scope_of(node)
        while True:
            found = self._bindings(scope).get(name)
            if found:
                return found
            if scope is self.tree:
                return None
            scope = self.scope_of(scope)

    def strings(self, node: ast.AST, depth: int = 0) -> list[str]:
        """Every text a string expression can have (interpolated unknowns become placeholders);
        raises Dynamic when it cannot be read."""
        if depth > 12:
            raise Dynamic("the value is built through too many steps")
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
                    except Dynamic:
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
                    raise Dynamic(self._why_dynamic(node.id, kind))
            return out[:_MAX_CANDIDATES]
        raise Dynamic(f"'{ast.unparse(node)[:60]}' is computed at runtime")

    def _joined(self, node: ast.Call, depth: int) -> list[str]:
        """sep.join(...): the items when they can be listed; for a comprehension, two copies of its
        element (enough to show the statement's shape, e.g. an OR between items); else a placeholder."""
        seps = self.strings(node.func.value, depth + 1)
        items = node.args[0]
        if isinstance(items, (ast.GeneratorExp, ast.ListComp, ast.SetComp)):
            try:
                elts = self.strings(items.elt, depth + 1)
            except Dynamic:
                elts = [self._new_placeholder()]
            return [sep.join((e, e)) for sep in seps for e in elts][:_MAX_CANDIDATES]
        try:
            listed = self.sequence(items, depth + 1)
        except Dynamic:
            return [self._new_placeholder()]
        return [sep.join(listed) for sep in seps]

    def sequence(self, node: ast.AST, depth: int = 0) -> list[str]:
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for e in node.elts for s in self.strings(e, depth + 1)]
        if isinstance(node, ast.Name):
            out = []
            for kind, value in self._entries(node):
                if kind != "value":
                    raise Dynamic(self._why_dynamic(node.id, kind))
                out.extend(self.sequence(value, depth + 1))
            return out
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("sorted", "tuple", "list", "reversed") and len(node.args) == 1):
            return self.sequence(node.args[0], depth + 1)
        raise Dynamic(f"'{ast.unparse(node)[:60]}' is computed at runtime")

    def _entries(self, name: ast.Name) -> list:
        found = self.lookup(name.id, name)
        if not found:
            raise Dynamic(f"'{name.id}' is not assigned in this module")
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
        except Dynamic:
            return None
        return got[0] if len(got) == 1 and DYN not in got[0] else None

    def table_name(self, node: ast.AST | None) -> str | None:
        """The table a SQLAlchemy table expression names: sa.table("t"), sa.Table("t", ...), a name
        bound to one, or a string."""
        if node is None:
            return None
        if isinstance(node, ast.Call):
            if self.is_sqlalchemy(node, "table", "Table") and node.args:
                name = self.one_string(node.args[0])
                return name.lower() if name else None
            return None
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, node) or []
            names = {self.table_name(v) for kind, v in found if kind == "value"}
            return names.pop() if len(names) == 1 else None
        name = self.one_string(node)
        return name.lower() if name else None

    # -- statements and SQL ---------------------------------------------------------------------------

    def stmt_lines(self, node: ast.AST) -> range:
        """The lines of the statement a node is part of (where a marker comment may be)."""
        p = node
        while p is not None and not isinstance(p, ast.stmt):
            p = self.parents.get(p)
        if p is None or hasattr(p, "body"):
            return range(node.lineno, (node.end_lineno or node.lineno) + 1)
        return range(p.lineno, (p.end_lineno or p.lineno) + 1)

    def sql_of(self, node: ast.AST, depth: int = 0) -> tuple[str, list[str]]:
        """("sql", texts) | ("construct", []) | ("dynamic", [why])."""
        while (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr in _TEXT_WRAPPERS):
            node = node.func.value
        if isinstance(node, ast.Call):
            q = self.qualname(node.func) or ""
            if q in TEXT_FUNCS and (node.args or node.keywords):
                try:
                    return "sql", self.strings(arg(node, 0, "text"))
                except Dynamic as d:
                    return "dynamic", [d.why]
            if self.is_construct(node):
                return "construct", []
        if isinstance(node, ast.Name) and depth < 8:
            found = self.lookup(node.id, node)
            if found and all(kind == "value" for kind, _ in found):
                texts: list[str] = []
                for _kind, value in found:
                    kind, got = self.sql_of(value, depth + 1)
                    if kind == "dynamic":
                        return kind, got
                    texts.extend(got)
                if texts or all(self.sql_of(v, depth + 1)[0] == "construct" for _k, v in found):
                    return ("sql", texts) if texts else ("construct", [])
        try:
            return "sql", self.strings(node)
        except Dynamic as d:
            return "dynamic", [d.why]

    def is_construct(self, node: ast.AST) -> bool:
        """Whether node builds a SQLAlchemy statement (sa.update(t).where(...), t.delete(), ...)."""
        while isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                if node.func.attr in _CONSTRUCT_METHODS:
                    return True
                node = node.func.value
                continue
            return (self.qualname(node.func) or "").startswith("sqlalchemy")
        return False
