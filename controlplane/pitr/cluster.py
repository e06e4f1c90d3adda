"""A PostgreSQL cluster on this machine: its binaries run as the cluster's owner (PostgreSQL refuses to
run as root), SQL over psycopg, start and stop with pg_ctl, and the waits that go with them."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg

from ..errors import PitrError

LSN_MASK = 32


def owner(path) -> str:
    """The OS user owning `path` (a cluster's data directory)."""
    return pwd.getpwuid(Path(path).stat().st_uid).pw_name


def as_user(cmd: list[str], user: str) -> list[str]:
    """`cmd` run as `user` (through runuser when erpctl runs as root and the user is another)."""
    if os.geteuid() == 0 and user != "root":
        return ["runuser", "-u", user, "--", *cmd]
    return cmd


def chown_tree(path, user: str) -> None:
    """Give `path` (and what is under it) to `user`, when erpctl may (it runs as root)."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, pw.pw_uid, pw.pw_gid)


def run(cmd: list[str], user: str, timeout: float = 3600, check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` as `user` from a directory that user can read; a failure is a PitrError with its output."""
    try:
        done = subprocess.run(as_user(cmd, user), capture_output=True, text=True, timeout=timeout, cwd="/",
                              check=False)
    except FileNotFoundError as exc:
        raise PitrError(f"{cmd[0]} is not installed: {exc}",
                        fix="Install it (Debian: apt-get install pgbackrest postgresql).") from None
    except subprocess.TimeoutExpired:
        raise PitrError(f"{' '.join(cmd[:3])} ran past {timeout:.0f}s and was stopped",
                        fix="Look at its log and run the command again.") from None
    if check and done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise PitrError(f"{Path(cmd[0]).name} {cmd[-1] if len(cmd) > 1 else ''} exited {done.returncode}: {said}",
                        fix="Read what it said above; 'erpctl pitr status' shows the archive and the backups.")
    return done


def connect(conninfo: dict, timeout: float = 5) -> psycopg.Connection:
    return psycopg.connect(**conninfo, connect_timeout=max(1, int(timeout)), autocommit=True)


def query(conninfo: dict, sql: str, params=None, timeout: float = 5) -> list[tuple]:
    with connect(conninfo, timeout) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def answers(conninfo: dict, timeout: float = 3) -> bool:
    try:
        query(conninfo, "SELECT 1", timeout=timeout)
        return True
    except psycopg.Error:
        return False


def lsn(text: str | None) -> int | None:
    """A PostgreSQL LSN ('16/B374D848') as a byte position."""
    if not text:
        return None
    hi, lo = str(text).split("/")
    return (int(hi, 16) << LSN_MASK) + int(lo, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir(explicit: str | None, version_num: int) -> str:
    """PostgreSQL's binaries for a server of that version: `explicit`, else Debian's layout, else PATH."""
    if explicit:
        return explicit
    debian = Path(f"/usr/lib/postgresql/{version_num // 10000}/bin")
    if (debian / "pg_ctl").exists():
        return str(debian)
    found = shutil.which("pg_ctl")
    if not found:
        raise PitrError("pg_ctl is not installed", fix="Install PostgreSQL's server binaries, or pass --pg-bin DIR.")
    return str(Path(found).parent)


def start(pg_bin: str, data: Path, user: str, *, port: int, socket_dir: str, log: Path, timeout: float = 600,
          settings: dict | None = None) -> None:
    """Start the cluster in `data` on 127.0.0.1:port (and a Unix socket in socket_dir), `settings`
    overriding its configuration; pg_ctl waits until it accepts connections (or gives up)."""
    opts = {"port": port, "listen_addresses": "127.0.0.1", "unix_socket_directories": socket_dir,
            **(settings or {})}
    line = " ".join(f"-c {k}='{v}'" for k, v in opts.items())
    done = run([f"{pg_bin}/pg_ctl", "-D", str(data), "-l", str(log), "-o", line, "-t", str(int(timeout)), "-w",
                "start"], user, timeout=timeout + 30, check=False)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip())[-500:]
        raise PitrError(f"PostgreSQL did not start in {data}: {said} {log_tail(log)}",
                        fix="Its log (above) says why.")


def stop(pg_bin: str, data: Path, user: str, mode: str = "fast", timeout: float = 120) -> bool:
    """Stop the cluster in `data`; False when it was not running."""
    done = run([f"{pg_bin}/pg_ctl", "-D", str(data), "-m", mode, "-t", str(int(timeout)), "-w", "stop"], user,
               timeout=timeout + 30, check=False)
    return done.returncode == 0


def log_tail(log: Path, lines: int = 6) -> str:
    try:
        text = Path(log).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])


def wait_out_of_recovery(conninfo: dict, timeout: float, alive=None) -> float:
    """Seconds until the cluster answers and is out of recovery; PitrError past `timeout`, or as soon
    as alive() says the server is gone."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            if query(conninfo, "SELECT pg_is_in_recovery()")[0][0] is False:
                return time.monotonic() - t0
            last = "still in recovery"
        except psycopg.Error as exc:
            last = str(exc).strip()
        if alive is not None and not alive():
            break
        time.sleep(0.2)
    raise PitrError(f"the cluster did not leave recovery within {timeout:.0f}s ({last})",
                    fix="Its log says why; a recovery target past the archived WAL never ends recovery.")
