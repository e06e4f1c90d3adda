"""The product's code stays in small pieces: no module of erp_core/ or controlplane/ over 800 lines,
no function (or method) over 80 lines. A failure names each file and function, with its size.

Exempt: erp_core/migrations/versions/*. A migration's file is fingerprinted by sha256 in
release.json, and preflight refuses an applied migration whose file changed, so a migration is
never edited once released: it cannot be reshaped to fit.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("erp_core", "controlplane")
EXEMPT = ("erp_core/migrations/versions/",)
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80


def product_modules() -> list[Path]:
    out = []
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(EXEMPT):
                out.append(path)
    return out


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(qualified name, first line, lines) of every function longer than limit: from its def line
    to its last line, nested functions counted on their own too."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                lines = child.end_lineno - child.lineno + 1
                if lines > limit:
                    out.append((name, child.lineno, lines))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return out


def test_the_product_is_found():
    paths = {p.relative_to(ROOT).as_posix() for p in product_modules()}
    assert "controlplane/cli/main.py" in paths and "erp_core/app.py" in paths
    assert not any(p.startswith("erp_core/migrations/versions/") for p in paths)


def test_no_module_is_over_800_lines():
    too_long = []
    for path in product_modules():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not too_long, (f"modules over {MAX_MODULE_LINES} lines (split them along their seams):\n  "
                          + "\n  ".join(too_long))


def test_no_function_is_over_80_lines():
    too_long = []
    for path in product_modules():
        for name, line, n in long_functions(path.read_text(encoding="utf-8")):
            too_long.append(f"{path.relative_to(ROOT)}:{line} {name}: {n} lines")
    assert not too_long, (f"functions over {MAX_FUNCTION_LINES} lines (split them by step):\n  "
                          + "\n  ".join(too_long))


def test_a_function_of_81_lines_is_named_and_one_of_80_is_not():
    def function(name: str, lines: int) -> str:
        return f"def {name}():\n" + "    x = 1\n" * (lines - 1)

    source = function("fits", 80) + "\n\nclass Owner:\n" + "\n".join(
        "    " + line for line in function("too_long", 81).splitlines())
    assert long_functions(source) == [("Owner.too_long", 84, 81)]  # after 80 lines, 2 blank ones and the class
