"""requirements.lock pins every runtime dependency of pyproject.toml, at an allowed version, with hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _locked() -> dict[str, tuple[Version, list[str]]]:
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)(.*)", line)
        assert m, f"not a pinned requirement: {line!r}"
        out[canonicalize_name(m.group(1))] = (Version(m.group(2)), re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(3)))
    return out


def test_the_lock_pins_every_dependency_with_hashes_at_an_allowed_version():
    locked = _locked()
    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    for req in deps:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: regenerate it (docs/dependencies.md)"
        version, _ = locked[name]
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version} is below {req.specifier}"
    unhashed = sorted(n for n, (_, hashes) in locked.items() if not hashes)
    assert not unhashed, f"pinned without hashes: {unhashed}"
    assert locked["waitress"][0] >= Version("3.0.1")  # CVE-2024-49768/49769
