"""A real `erpctl up` (ERP and control plane) for the monitors tests, and the ERP served alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.controlplane.cli_helpers import LineProcess, env, erpctl_path

START_TIMEOUT = 90
ERP_ONLY = Path(__file__).with_name("erp_only.py")


class Process(LineProcess):
    """A subprocess whose stdout lines are collected as they come; stderr goes to a file."""

    def first_json_line(self, timeout: float = START_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("{"):
                    return json.loads(line)
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        pytest.fail(f"{self.proc.args[:3]} printed no JSON line (exit {self.proc.poll()}):\n"
                    + "\n".join(self.lines) + "\n" + self.log[-5000:])

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2)
        self._log.close()
        return self.proc.returncode


def wait_http(url: str, proc: Process, timeout: float = START_TIMEOUT, headers=None) -> requests.Response:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f"{proc.proc.args[:3]} exited with {proc.proc.returncode}:\n{proc.log[-5000:]}")
        try:
            r = requests.get(url, timeout=2, headers=headers)
            if r.status_code == 200:
                return r
            last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {timeout}s ({last}):\n{proc.log[-5000:]}")


class Up:
    """`erpctl --json up` on a fresh data directory, any free ports."""

    def __init__(self, data_dir: Path, log: Path, **env_extra):
        self.data_dir = data_dir
        self.process = Process([erpctl_path(), "--json", "up", "--data-dir", data_dir, "--erp-port", 0,
                                "--ops-port", 0], log, env=env(**env_extra))
        try:
            self.info = self.process.first_json_line()
            assert self.info["event"] == "started", self.info
            self.erp_port = self.info["erp_port"]
            self.ops_port = self.info["ops_port"]
            self.erp_url = f"http://127.0.0.1:{self.erp_port}"
            self.ops_url = f"http://127.0.0.1:{self.ops_port}"
            wait_http(self.erp_url + "/readyz", self.process)
            wait_http(self.ops_url + "/healthz", self.process)
        except BaseException:
            self.process.stop(signal.SIGKILL)
            raise


class ErpOnly:
    """The ERP alone (tests/monitors/erp_only.py) on the database of a data directory."""

    def __init__(self, data_dir: Path, log: Path, port: int = 0):
        self.data_dir, self.log, self.port = data_dir, log, port
        self.process: Process | None = None

    def start(self) -> ErpOnly:
        last = ""
        for _ in range(20):  # the port of a killed server may take a moment to be free again
            p = Process([sys.executable, ERP_ONLY, "--data-dir", self.data_dir, "--port", self.port],
                        self.log.parent / f"{self.log.name}-{time.monotonic_ns()}.log", env=env())
            deadline = time.monotonic() + 30
            while (not any(ln.startswith("{") for ln in p.lines) and p.proc.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            if any(ln.startswith("{") for ln in p.lines):
                self.process = p
                self.port = p.first_json_line()["port"]
                wait_http(f"http://127.0.0.1:{self.port}/readyz", p, timeout=30)
                return self
            p.stop(signal.SIGKILL)
            last = p.log
            time.sleep(0.25)
        pytest.fail(f"the ERP could not be started on port {self.port}:\n{last[-5000:]}")

    def kill(self) -> None:
        """SIGKILL: the ERP dies as it would from a crash or the OOM killer."""
        self.process.stop(signal.SIGKILL)

    def close(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def erpctl_up(tmp_path):
    up = Up(tmp_path / "data", tmp_path / "erpctl-up.log")
    yield up
    rc = up.process.stop()
    assert rc == 0, up.process.log[-5000:]


@pytest.fixture
def erp_only(tmp_path):
    started = []

    def start(data_dir: Path) -> ErpOnly:
        e = ErpOnly(data_dir, tmp_path / "erp-only").start()
        started.append(e)
        return e

    yield start
    for e in started:
        e.close()
