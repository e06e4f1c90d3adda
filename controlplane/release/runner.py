"""Running a release's own code in its own environment, for questions only it can answer
(what it is, whether it can run on a database, migrating or seeding with its migrations)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ..config import Target
from ..errors import ReleaseError, ReleaseIncompatible

HELPER = Path(__file__).with_name("inenv.py")
# What a release's processes get of our environment: nothing else (no backup passphrase, no cloud
# credentials, no PYTHON*/PIP_* that would change what its Python imports). What they need beyond
# this (the database URL, the field key) is given to them explicitly.
CHILD_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "NO_COLOR",
             "PROMETHEUS_MULTIPROC_DIR", "ERPCTL_FAILPOINTS", "ERPCTL_LOG_FORMAT", "ERPCTL_LOG_LEVEL")
CHILD_ENV_PREFIXES = ("LC_",)


def child_env(extra: dict | None = None) -> dict:
    """The environment for a release's processes: the allow-listed variables of ours, and `extra`."""
    env = {k: v for k, v in os.environ.items() if k in CHILD_ENV or k.startswith(CHILD_ENV_PREFIXES)}
    env.update(extra or {})
    return env


def python_command(python: str | os.PathLike, script: str | os.PathLike, *args) -> list[str]:
    """`python -E -P script args`: ignore PYTHON* variables and do not put the working directory (or
    the script's) on the path, so only the environment's own packages come first."""
    return [str(python), "-E", "-P", str(script), *map(str, args)]


def call(python: str | os.PathLike, command: str, payload: dict | None = None, *, timeout: float = 120,
         what: str = "the release") -> dict:
    """Run inenv.py COMMAND with `python` (a release's), payload on stdin; its result, or ReleaseError."""
    try:
        proc = subprocess.run(python_command(python, HELPER, command), input=json.dumps(payload or {}),
                              capture_output=True, text=True, timeout=timeout, env=child_env(), cwd="/")
    except subprocess.TimeoutExpired:
        raise ReleaseError(f"{what} did not answer {command!r} within {timeout:.0f} s",
                           fix="Check the database and the host's load, then try again.") from None
    except OSError as exc:
        raise ReleaseError(f"cannot run {what}'s Python {python}: {exc.strerror or exc}",
                           fix="Install the release again ('erpctl release install WHEEL').") from None
    answer = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                answer = json.loads(line)
                break
            except ValueError:
                continue
    if answer is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ReleaseError(f"{what} failed to answer {command!r} (exit {proc.returncode}): {tail}",
                           fix="Install the release again ('erpctl release install WHEEL'); the error above "
                               "says what its code could not do.")
    if not answer.get("ok"):
        raise ReleaseError(f"{what} could not {command}: {answer.get('error')}: {answer.get('detail')}",
                           fix=answer.get("fix") or "The message above is the release's own; see runbooks/.")
    return answer["result"]


def check_database(target: Target, release) -> dict:
    """Whether `release`'s code can run on the target database, in its own words (erp_core.db.schema_status
    of that release): {"supported", "reason", "current", "code_head", "newer", "database"}."""
    path = target.sqlite_path
    if path is not None and not path.exists():
        return {"supported": True, "database": "missing", "current": None, "code_head": release.schema_head,
                "reason": f"there is no database at {path} yet: 'erpctl up' creates it with this release's "
                          "migrations", "newer": []}
    status = call(release.python, "schema-status", {"database_url": target.database_url},
                  what=f"release {release.version}")
    return {**status, "database": "present"}


def require_compatible(target: Target, release) -> dict:
    """check_database, raising ReleaseIncompatible with the release's reason when it cannot run."""
    status = check_database(target, release)
    if not status["supported"]:
        raise ReleaseIncompatible(
            f"release {release.version} cannot run on the database ({target.display_url}): {status['reason']}",
            fix="Switch to a release whose code supports this schema (erpctl release list), or move the schema "
                "with a staged upgrade first; switching releases by hand never migrates.",
            version=release.version, schema=status)
    return status


def check_invariants(target: Target, release, field_key: str | None = None) -> dict:
    """The business invariants as `release`'s code defines them (erp_core.invariants.check_all):
    {"ok", "checks", "seconds", "violations"}. For monitoring while a release other than the bundled
    erp_core serves."""
    return call(release.python, "invariants", {"database_url": target.database_url, "field_key": field_key},
                timeout=3600, what=f"release {release.version}")
