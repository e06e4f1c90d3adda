"""The import graph between the two parts: the control plane reaches the ERP only through its operator
interface (erp_core.ops) and its errors (erp_core.errors); the ERP imports nothing of the control plane.

Every module is parsed (not imported), so an import at any depth counts: at the top, inside a
function or a class, `import erp_core.x`, `from erp_core import x`, `from erp_core.x import y`, and
importlib.import_module("erp_core.x") / __import__("erp_core.x") with a literal name.

Two exemptions, and why: controlplane/release/launcher.py and controlplane/release/inenv.py are
standalone scripts that a release's own Python runs (`<env>/bin/python -E -P launcher.py ...`), so
they import *that release's* erp_core, which may be 1.0 — and 1.0 has no erp_core.ops. They may use
what release 1.0 already has, and in exchange they stay standalone: the standard library and erp_core
only, nothing of the control plane, and every erp_core name they use exists in the committed 1.0 wheel
(tests/fixtures/releases). Both are checked below.
"""

from __future__ import annotations

import ast
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEEL_1_0 = ROOT / "tests" / "fixtures" / "releases" / "erp_controlplane-1.0.0-py3-none-any.whl"

INTERFACE = ("erp_core.ops", "erp_core.errors")
EXEMPT = {
    "controlplane/release/launcher.py": "serves a release with its own erp_core (1.0 has no erp_core.ops)",
    "controlplane/release/inenv.py": "asks a release's own erp_core about itself and its database (1.0 too)",
}


# ---- the check ----------------------------------------------------------------------------------

def imported_modules(source: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names taken from it) for every absolute import in `source`, at any depth;
    `from erp_core import x` is reported as module erp_core.x."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if "." not in node.module:  # `from package import x`: x may be a module of it
                found += [(node.lineno, f"{node.module}.{alias.name}", ()) for alias in node.names]
            else:
                found.append((node.lineno, node.module, tuple(alias.name for alias in node.names)))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _dynamic_import(node.func)):
            found.append((node.lineno, node.args[0].value, ()))
    return sorted(found)


def _dynamic_import(func) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__")


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def erp_core_violations(source: str) -> list[tuple[int, str]]:
    """(line, module) of each import of erp_core other than through its interface."""
    return [(line, module) for line, module, _ in imported_modules(source)
            if _in(module, "erp_core") and module not in INTERFACE]


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---- the rules ----------------------------------------------------------------------------------

def test_the_control_plane_imports_the_erp_only_through_ops_and_errors():
    found = [f"{_rel(path)}:{line}: imports {module}"
             for path in modules_of("controlplane") if _rel(path) not in EXEMPT
             for line, module in erp_core_violations(path.read_text())]
    assert not found, ("the control plane may import only erp_core.ops and erp_core.errors "
                       "(add what it needs to erp_core.ops):\n" + "\n".join(found))


def test_the_erp_imports_nothing_of_the_control_plane():
    found = [f"{_rel(path)}:{line}: imports {module}"
             for path in modules_of("erp_core")
             for line, module, _ in imported_modules(path.read_text()) if _in(module, "controlplane")]
    assert not found, "the ERP knows nothing of the control plane:\n" + "\n".join(found)


def test_the_check_sees_imports_at_every_depth_and_in_every_form():
    source = "\n".join([
        "import erp_core.ops",                      # 1 allowed
        "from erp_core import ops, errors",         # 2 allowed
        "from erp_core.ops import migrate",         # 3 allowed
        "from erp_core.errors import Conflict",     # 4 allowed
        "import erp_core",                          # 5 the whole package
        "from erp_core import db, ops",             # 6 db
        "def f():",
        "    from erp_core.models import User",     # 8 inside a function
        "class C:",
        "    def g(self):",
        "        import erp_core.services.auth as a",  # 11 inside a method
        "importlib.import_module('erp_core.crypto')",  # 12 by name
        "from erp_core.ops._schema import x",       # 13 a private part of ops
        "from . import erp_core",                   # 14 relative: a module of the control plane
    ])
    assert erp_core_violations(source) == [(5, "erp_core"), (6, "erp_core.db"), (8, "erp_core.models"),
                                           (11, "erp_core.services.auth"), (12, "erp_core.crypto"),
                                           (13, "erp_core.ops._schema")]


# ---- the exemptions -------------------------------------------------------------------------------

def test_each_exemption_is_a_script_that_still_needs_it():
    for rel in EXEMPT:
        source = (ROOT / rel).read_text()
        assert "__main__" in source, f"{rel} is exempt as a standalone script, but has no __main__ entry"
        assert erp_core_violations(source), f"{rel} no longer imports erp_core beyond ops: drop its exemption"


def test_exempt_scripts_are_standalone():
    """Only the standard library and erp_core: they run in a release's environment, where neither the
    control plane nor its dependencies are guaranteed."""
    for rel in EXEMPT:
        tree_source = (ROOT / rel).read_text()
        relative = [n.lineno for n in ast.walk(ast.parse(tree_source)) if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{rel}: relative import(s) at line(s) {relative}"
        others = [f"{rel}:{line}: {module}" for line, module, _ in imported_modules(tree_source)
                  if module.split(".")[0] not in sys.stdlib_module_names and not _in(module, "erp_core")]
        assert not others, "exempt scripts import only the standard library and erp_core:\n" + "\n".join(others)


def _defined_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _missing_in(wheel: zipfile.ZipFile, module: str, names: tuple[str, ...]) -> list[str]:
    members = set(wheel.namelist())
    base = module.replace(".", "/")
    path = next((p for p in (f"{base}.py", f"{base}/__init__.py") if p in members), None)
    if path is None:
        return [module]
    defined = _defined_names(wheel.read(path).decode())
    return [f"{module}.{n}" for n in names if n not in defined and f"{base}/{n}.py" not in members
            and f"{base}/{n}/__init__.py" not in members]


def test_exempt_scripts_use_only_what_release_1_0_has():
    with zipfile.ZipFile(WHEEL_1_0) as wheel:
        assert "erp_core/ops/__init__.py" not in wheel.namelist()  # why they are exempt
        missing = [f"{rel}:{line}: {name}" for rel in EXEMPT
                   for line, module, names in imported_modules((ROOT / rel).read_text()) if _in(module, "erp_core")
                   for name in _missing_in(wheel, module, names)]
    assert not missing, "names release 1.0's erp_core does not have:\n" + "\n".join(missing)


def test_the_1_0_check_finds_a_name_1_0_does_not_have():
    with zipfile.ZipFile(WHEEL_1_0) as wheel:
        assert _missing_in(wheel, "erp_core.db", ("migrate", "schema_status")) == []
        assert _missing_in(wheel, "erp_core.db", ("migrate", "no_such_function")) == ["erp_core.db.no_such_function"]
        assert _missing_in(wheel, "erp_core.ops", ()) == ["erp_core.ops"]
