"""Running the real `erpctl` (the console script pip installed) as a subprocess, hermetically."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from controlplane.drills import sandbox

REQUIRE = os.environ.get("ERPCTL_REQUIRE_INTEGRATION") == "1"
PG_ADMIN_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct horse battery"
# Variables that would point erpctl at the developer's own installation.
HERMETIC = ("ERP_FIELD_KEY", "ERPCTL_DATA_DIR", "ERPCTL_DATABASE_URL", "ERPCTL_HOST", "ERPCTL_ERP_PORT",
            "ERPCTL_OPS_PORT", "ERPCTL_LOG_LEVEL", "ERPCTL_LOG_FORMAT")


def need(reason: str):
    """Skip for a missing external part; fail instead when integration is required (CI)."""
    if REQUIRE:
        pytest.fail(f"{reason} (ERPCTL_REQUIRE_INTEGRATION=1: integration parts must be present)")
    pytest.skip(reason)


@contextmanager
def small_filesystem(mnt: Path, size: str):
    """A tmpfs of `size` ("6m") mounted on `mnt` (made here) while inside: a filesystem that fills for
    real. Needs root; without it, need() says so."""
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        need(f"cannot mount a small tmpfs for a disk-full test (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def erpctl_path() -> str:
    beside = Path(sys.executable).with_name("erpctl")
    found = str(beside) if beside.exists() else shutil.which("erpctl")
    if not found:
        pytest.fail("the erpctl console script is not installed: run the README's test command")
    return found


def env(**extra) -> dict:
    out = {k: v for k, v in os.environ.items() if k not in HERMETIC}
    out.update(extra)
    return out


def erpctl(*args, input: str | None = None, timeout: float = 120, **env_extra) -> subprocess.CompletedProcess:
    return subprocess.run([erpctl_path(), *map(str, args)], input=input, capture_output=True, text=True,
                          timeout=timeout, env=env(**env_extra))


def ok(*args, **kw) -> subprocess.CompletedProcess:
    r = erpctl(*args, **kw)
    assert r.returncode == 0, f"erpctl {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def ok_json(*args, **kw):
    return json.loads(ok("--json", *args, **kw).stdout)


def free_ports(n: int = 2) -> list[int]:
    return sandbox.free_ports(n)


def port_is_free(port: int) -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def log_lines(stderr: str) -> list[dict]:
    """stderr of a non-terminal run: every log line is a JSON object (messages are not)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


class LineProcess:
    """A subprocess whose stdout lines are collected as they come; stderr goes to a file."""

    def __init__(self, args, log: Path, **kw):
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - open for the life of the process
        self.proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, text=True, **kw)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")
