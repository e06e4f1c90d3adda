#!/usr/bin/env python
"""erpctl's start-up: each command timed as a whole process, as an operator (or a runbook step, a
scheduled job, an Ansible task) runs it, beside `python -c pass` started the same way.

    python -c pass                     the interpreter alone (the floor)
    erpctl --help / --version          no command imported
    erpctl erp maintenance status      a small data directory (a migrated, empty SQLite database)
    erpctl erp check                   the invariants of that empty database
    erpctl backup list                 a repository with one backup (key derivation at its cheapest setting)
    erpctl backup show latest          that backup's manifest
    erpctl evidence verify             an empty evidence log
    erpctl status                      nothing served (the ERP's port refuses at once)
    erpctl settings                    every setting of that data directory and its source
    erpctl upgrade status              no upgrade recorded
    erpctl release list                no release installed

These are the commands runbooks run most (status, erp maintenance status, backup list, erp check,
settings, upgrade status) and the ones an operator runs by hand. Each does almost no work of its
own here, so its wall time is erpctl's overhead before the real work. Runs are interleaved (one of each, in an order rotated every round) and repeated; the
table shows the median wall time, its spread, and the median CPU time of the process (user +
system: what a busy machine inflates least). Targets: --help and --version <= 150 ms, a command's
overhead <= 300 ms, on a quiet machine (the load average is printed beside the figures).

    python bench/startup.py                 # 9 rounds
    python bench/startup.py --runs 15 --json
    python bench/startup.py --port 18000    # the port `erpctl status` probes (default: a free one)
    python bench/startup.py --against OTHER/.venv/bin/erpctl   # another erpctl (an older checkout's),
                                            # interleaved with this one: before and after, side by side

Not a test: see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_HELP_MS = 150
TARGET_COMMAND_MS = 300
PASSPHRASE = "bench startup passphrase"


def erpctl_path() -> str:
    beside = Path(sys.executable).with_name("erpctl")
    found = str(beside) if beside.exists() else shutil.which("erpctl")
    if not found:
        sys.exit("bench/startup.py: no erpctl beside this Python or on PATH: run python -m pip install -e .")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(work: Path, erpctl: str, env: dict) -> dict[str, Path]:
    """A migrated empty data directory and a backup repository with one backup of it."""
    data, repo = work / "data", work / "repo"
    for args in (["erp", "migrate", "--data-dir", str(data)],
                 ["backup", "init", "--kdf-memory", "8192", "--repo", f"file://{repo}", "--data-dir", str(data)],
                 ["backup", "create", "--repo", f"file://{repo}", "--data-dir", str(data)]):
        r = subprocess.run([erpctl, *args], capture_output=True, text=True, env=env, timeout=300)
        if r.returncode != 0:
            sys.exit(f"bench/startup.py: erpctl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return {"data": data, "repo": repo}


def cases(erpctl: str, paths: dict[str, Path], port: int) -> dict[str, tuple[list[str], set[int]]]:
    """name -> (argv, the exit codes it may end with)."""
    data, repo = str(paths["data"]), f"file://{paths['repo']}"
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], {0}),
        "erpctl --help": ([erpctl, "--help"], {0}),
        "erpctl --version": ([erpctl, "--version"], {0}),
        "erpctl erp maintenance status": ([erpctl, "erp", "maintenance", "status", "--data-dir", data], {0}),
        "erpctl erp check": ([erpctl, "erp", "check", "--data-dir", data], {0}),
        "erpctl backup list": ([erpctl, "backup", "list", "--repo", repo, "--data-dir", data], {0}),
        "erpctl backup show latest": ([erpctl, "backup", "show", "latest", "--repo", repo, "--data-dir", data], {0}),
        "erpctl evidence verify": ([erpctl, "evidence", "verify", "--data-dir", data], {0}),
        # nothing serves on the port: the ERP is down, which status reports as critical (17)
        "erpctl status": ([erpctl, "status", "--data-dir", data, "--erp-url", f"http://127.0.0.1:{port}",
                           "--timeout", "1"], {17}),
        "erpctl settings": ([erpctl, "settings", "--data-dir", data], {0}),
        "erpctl upgrade status": ([erpctl, "upgrade", "status", "--data-dir", data], {0}),
        "erpctl release list": ([erpctl, "release", "list", "--data-dir", data], {0}),
    }


def time_once(argv: list[str], codes: set[int], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one whole process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in codes:
        sys.exit(f"bench/startup.py: {' '.join(argv)} exited {proc.returncode}:\n{err.decode()[-2000:]}")
    return took, usage.ru_utime + usage.ru_stime


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def run(runs: int, port: int, work: Path, against: str | None = None) -> dict:
    """against: another erpctl, whose runs are interleaved with this one's (its rows are marked "(other)")."""
    erpctl = erpctl_path()
    env = {**os.environ, "ERPCTL_BACKUP_PASSPHRASE": PASSPHRASE, "ERPCTL_LOG_LEVEL": "warning"}
    for var in ("ERPCTL_DATA_DIR", "ERPCTL_DATABASE_URL", "ERPCTL_BACKUP_REPO", "ERPCTL_ERP_URL"):
        env.pop(var, None)
    paths = prepare(work, against or erpctl, env)  # files as the other (older) erpctl writes them, which this one reads
    table = cases(erpctl, paths, port)
    if against:
        other = cases(against, paths, port)
        table = {k: v for name in table for k, v in ((name, table[name]), (f"{name} (other)", other[name]))
                 if not (k.startswith("python") and k.endswith("(other)"))}
    names = list(table)
    for name in names:  # one unmeasured run each: the page cache and the .pyc files are warm
        time_once(*table[name], env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_ in range(runs):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            times[name].append(time_once(*table[name], env))
    return {"runs": runs, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "erpctl": erpctl, "other": against,
            "commands": {name: {"median_ms": ms(statistics.median(w for w, _ in ts)),
                                "min_ms": ms(min(w for w, _ in ts)), "max_ms": ms(max(w for w, _ in ts)),
                                "cpu_median_ms": ms(statistics.median(c for _, c in ts)),
                                "target_ms": None if name.startswith("python") else
                                TARGET_HELP_MS if name.split(" (")[0].endswith(("--help", "--version")) else
                                TARGET_COMMAND_MS}
                         for name, ts in times.items()}}


def render(result: dict) -> str:
    base = result["commands"]["python -c pass"]["median_ms"]
    lines = [f"{'':<40}{'median':>9}{'min':>9}{'max':>9}{'- python':>10}{'cpu':>9}{'target':>9}",
             *(f"{name:<40}{c['median_ms']:>7.0f}ms{c['min_ms']:>7.0f}ms{c['max_ms']:>7.0f}ms"
               f"{c['median_ms'] - base:>8.0f}ms{c['cpu_median_ms']:>7.0f}ms"
               + (f"{'':>9}" if c["target_ms"] is None else
                  f"{'<= ' + str(c['target_ms']):>9}{'' if c['median_ms'] <= c['target_ms'] else '  MISSED'}")
               for name, c in result["commands"].items()),
             f"wall time: medians of {result['runs']} interleaved runs (cpu: the process's user + system time, "
             "median); load average "
             f"{' '.join(f'{x:.2f}' for x in result['load_average'])} on {result['cpus']} CPU(s); "
             f"Python {result['python']}"
             + (f"; (other): {result['other']}" if result.get("other") else "")]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=9, help="rounds of interleaved runs (default 9, at least 5)")
    p.add_argument("--port", type=int, default=None, help="the port `erpctl status` probes (default: a free one)")
    p.add_argument("--work", default=None, help="parent of the temporary work directory (default: the temp dir)")
    p.add_argument("--against", default=None, metavar="ERPCTL",
                   help="another erpctl (e.g. an older checkout's) to time interleaved with this one")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()
    if args.runs < 5:
        p.error("--runs must be at least 5 (a median of fewer says little)")
    with tempfile.TemporaryDirectory(prefix="erpctl-bench-startup-", dir=args.work) as work:
        result = run(args.runs, args.port or free_port(), Path(work), args.against)
    print(json.dumps(result, indent=1) if args.json else render(result))


if __name__ == "__main__":
    main()
