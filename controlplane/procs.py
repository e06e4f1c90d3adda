"""Processes of this machine as /proc shows them (Linux): enough to tell that a recorded pid is still
the process that was recorded, and not a stranger that reuses its number.

A process is identified by its pid *and* its start time (field 22 of /proc/<pid>/stat, in clock ticks
since boot): a pid reused by another process has another start time. Reading /proc costs no import
(psutil would add ~20 ms to every command that opens the installation).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot); None when there is no such process."""
    try:
        raw = (PROC / str(int(pid)) / "stat").read_text()
    except (OSError, ValueError, TypeError, OverflowError):
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime 22
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def state(pid: int) -> str | None:
    """The process's state letter (R, S, D, T, Z...), None when there is none."""
    try:
        raw = (PROC / str(int(pid)) / "stat").read_text()
    except (OSError, ValueError, TypeError, OverflowError):
        return None
    return raw[raw.rfind(")") + 2:][:1] or None


def is_same(pid: int | None, ticks: int | None) -> bool:
    """The process `pid` runs and is the one that started at `ticks` (a zombie has ended already)."""
    if not pid:
        return False
    now = start_ticks(pid)
    if now is None or (ticks is not None and now != ticks):
        return False
    return state(pid) != "Z"


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(int(pid)) / "cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else None


def environ(pid: int) -> dict[str, str] | None:
    """The environment the process started with (None when it cannot be read: another user's)."""
    try:
        raw = (PROC / str(int(pid)) / "environ").read_bytes()
    except (OSError, ValueError):
        return None
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(PROC / str(int(pid)) / "cwd"))
    except (OSError, ValueError):
        return None


# ---- erpctl's own processes --------------------------------------------------------------------

_GLOBAL_WITH_VALUE = {"--log-level"}


def erpctl_command(args: list[str]) -> list[str] | None:
    """The erpctl arguments of a command line (after the `erpctl` script or `python -m controlplane`),
    None when it is not erpctl."""
    for i, arg in enumerate(args):
        if Path(arg).name == "erpctl":
            return args[i + 1:]
        if arg == "-m" and i + 1 < len(args) and args[i + 1] == "controlplane":
            return args[i + 2:]
    return None


def subcommand(args: list[str]) -> tuple[str | None, list[str]]:
    """erpctl's first command word and the arguments after it (global options skipped)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg, args[i + 1:]
    return None, []


def option(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` (the last one given), None when absent."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def erpctl_up_args(pid: int) -> list[str] | None:
    """The arguments after `up` when the process is `erpctl up`, else None."""
    rest = erpctl_command(cmdline(pid) or [])
    if rest is None:
        return None
    word, after = subcommand(rest)
    return after if word == "up" else None


def erpctl_up_data_dir(pid: int, default_dir: str) -> Path | None:
    """The data directory the process serves when it is `erpctl up` (its --data-dir, else its
    ERPCTL_DATA_DIR, else `default_dir`, relative to its working directory); None when it is not
    `erpctl up` or that cannot be told."""
    after = erpctl_up_args(pid)
    if after is None:
        return None
    given = option(after, "--data-dir")
    if given is None:
        env = environ(pid)
        if env is None:
            return None
        given = env.get("ERPCTL_DATA_DIR") or default_dir
    base = cwd(pid)
    path = Path(given).expanduser()
    if not path.is_absolute():
        if base is None:
            return None
        path = base / path
    return path.resolve()


def erp_child_port(pid: int) -> int | None:
    """The port of an ERP child of `erpctl up` (`python ... launcher.py --port P`), None when the process
    is not one."""
    args = cmdline(pid) or []
    if not any(Path(a).name == "launcher.py" for a in args):
        return None
    port = option(args, "--port")
    try:
        return int(port) if port is not None else None
    except ValueError:
        return None


# ---- ending one ---------------------------------------------------------------------------------

def wait_gone(pid: int, ticks: int | None, timeout: float, poll: float = 0.1) -> bool:
    """Wait until that process has ended (gone, reused, or a zombie); whether it did within `timeout`."""
    deadline = time.monotonic() + timeout
    while is_same(pid, ticks):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def terminate(pid: int, ticks: int | None, grace: float, kill_wait: float = 10.0) -> str | None:
    """SIGTERM (and SIGCONT, so that a stopped process handles it), SIGKILL if it has not ended after
    `grace` seconds. The signal that ended it ("SIGTERM", "SIGKILL"); None when it had ended already;
    PermissionError when it may not be signalled; TimeoutError when even SIGKILL did not end it."""
    if not is_same(pid, ticks):
        return None
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        return None
    if wait_gone(pid, ticks, grace):
        return "SIGTERM"
    if not is_same(pid, ticks):  # checked again just before the kill: never a reused pid
        return "SIGTERM"
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "SIGTERM"
    if wait_gone(pid, ticks, kill_wait):
        return "SIGKILL"
    raise TimeoutError(f"process {pid} did not end {kill_wait:.0f} s after SIGKILL (state {state(pid)})")


def systemd_unit(pid: int, env: dict[str, str] | None) -> str | None:
    """The systemd service the process runs as (systemd set INVOCATION_ID in its environment and its
    cgroup is the service's), None outside one."""
    if not env or "INVOCATION_ID" not in env:
        return None
    try:
        lines = (PROC / str(int(pid)) / "cgroup").read_text().splitlines()
    except (OSError, ValueError):
        return None
    for line in lines:
        leaf = line.split(":", 2)[-1].rstrip("/").rsplit("/", 1)[-1]
        if leaf.endswith(".service"):
            return leaf
    return None
