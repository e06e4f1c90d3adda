"""What the release and upgrade tests share: the committed 1.0 release, and a wheel of this tree."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from controlplane import release
from controlplane.release import signing

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
WHEEL_1_0 = FIXTURES / "releases" / "erp_controlplane-1.0.0-py3-none-any.whl"
DB_1_0 = FIXTURES / "erp-1.0.sqlite3"
FIXTURE_KEY = "fixture-field-key"
FIXTURE_ADMIN = ("admin", "fixture admin password")
SIGNING_KEY = FIXTURES / "release-keys" / "fixture.key"  # its .pub is trusted in every test (conftest.py)

_built: dict[str, Path] = {}
_build_lock = threading.Lock()


def build_tree_wheel(directory: Path) -> Path:
    """`python -m pip wheel --no-deps <this source tree>`, once per test session. pip builds in the tree
    (its build/ directory), so two processes building at once break each other's build: under
    pytest-xdist the workers share one wheel, built by the first under a lock beside their temporary
    directories (pytest-xdist's documented pattern for session-wide data)."""
    with _build_lock:
        if "tree" not in _built:
            if os.environ.get("PYTEST_XDIST_WORKER"):  # directory is <run's temp>/<worker's temp>/<name>
                directory = directory.parent.parent / directory.name
            directory.mkdir(parents=True, exist_ok=True)
            with open(directory.parent / f"{directory.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                _built["tree"] = _built_wheel(directory)
        return _built["tree"]


def _built_wheel(directory: Path) -> Path:
    """The signed wheel in `directory`, built there unless another process has already built it."""
    wheels = sorted(directory.glob("erp_controlplane-*.whl"))
    if not wheels:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-input",
                            "--disable-pip-version-check", "-q", str(REPO_ROOT), "-w", str(directory)],
                           capture_output=True, text=True, timeout=600, cwd=directory)
        assert r.returncode == 0, f"building the tree's wheel failed:\n{r.stdout}\n{r.stderr}"
        wheels = sorted(directory.glob("erp_controlplane-*.whl"))
        assert len(wheels) == 1, wheels
        signing.sign(wheels[0], SIGNING_KEY)  # what the release build does with its signing key
    assert len(wheels) == 1, wheels
    return wheels[0]


def tree_wheel_and_version(tmp_path_factory) -> tuple[Path, str]:
    """The tree's wheel (built once per session, whichever module asks first) and its version."""
    wheel = build_tree_wheel(tmp_path_factory.getbasetemp() / "tree-wheel")
    version = release.inspect_wheel(wheel).version
    assert version != "1.0.0", "the source tree must carry a version of its own to install beside release 1.0"
    return wheel, version


def copy_signed(wheel: Path, dest: Path) -> Path:
    """Copy a wheel and its signature (dest: a file path or a directory)."""
    dest = dest / wheel.name if dest.is_dir() else dest
    shutil.copy(wheel, dest)
    shutil.copy(signing.signature_path(wheel), signing.signature_path(dest))
    return dest


def sign_for_tests(wheel: Path) -> Path:
    """Sign a wheel a test made with the trusted fixture key (so that it reaches the checks after the signature)."""
    signing.sign(wheel, SIGNING_KEY)
    return wheel
