"""What the release and upgrade tests share: the committed 1.0 release, and a wheel of this tree."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from controlplane import release

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
WHEEL_1_0 = FIXTURES / "releases" / "erp_controlplane-1.0.0-py3-none-any.whl"
DB_1_0 = FIXTURES / "erp-1.0.sqlite3"
FIXTURE_KEY = "fixture-field-key"
FIXTURE_ADMIN = ("admin", "fixture admin password")

_built: dict[str, Path] = {}
_build_lock = threading.Lock()


def build_tree_wheel(directory: Path) -> Path:
    """`python -m pip wheel --no-deps <this source tree>`, once per test session."""
    with _build_lock:
        if "tree" not in _built:
            directory.mkdir(parents=True, exist_ok=True)
            r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-input",
                                "--disable-pip-version-check", "-q", str(REPO_ROOT), "-w", str(directory)],
                               capture_output=True, text=True, timeout=600, cwd=directory)
            assert r.returncode == 0, f"building the tree's wheel failed:\n{r.stdout}\n{r.stderr}"
            wheels = sorted(directory.glob("erp_controlplane-*.whl"))
            assert len(wheels) == 1, wheels
            _built["tree"] = wheels[0]
        return _built["tree"]


def tree_wheel_and_version(tmp_path_factory) -> tuple[Path, str]:
    """The tree's wheel (built once per session, whichever module asks first) and its version."""
    wheel = build_tree_wheel(tmp_path_factory.getbasetemp() / "tree-wheel")
    version = release.inspect_wheel(wheel).version
    assert version != "1.0.0", "the source tree must carry a version of its own to install beside release 1.0"
    return wheel, version
