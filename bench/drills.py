#!/usr/bin/env python
"""Every drill scenario on a seeded installation, on SQLite and PostgreSQL: detection time, RTO, RPO
and each drill's duration, as `erpctl drill run` records them.

For each backend the bench makes an installation (a data directory; on PostgreSQL a database of its
own), seeds it (`erpctl erp seed --scale N`), takes a backup, then runs every scenario with
`erpctl drill run SCENARIO --backend B --json`: each sandbox is restored from that backup (a restore test
each time), so the drills run on the seeded data. One drill at a time.

    python bench/drills.py                                   # --scale 50, both backends, every scenario
    python bench/drills.py --backends sqlite --scale 5 --scenarios erp-killed,erp-hung

upgrade-fails-halfway rehearses an upgrade, so it runs on an installation of its own that serves an older
release: release 1.0 (the wheel kept in tests/fixtures, --upgrade-from-wheel) migrated and seeded by its
own erpctl, with a wheel of this tree installed beside it (built here, signed with the test fixture key,
which the bench's erpctl processes trust).

Not a test: it asserts nothing and is never run by pytest. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FOREIGN = ("ERPCTL_DATA_DIR", "ERPCTL_DATABASE_URL", "ERPCTL_BACKUP_REPO", "ERPCTL_BACKUP_KEY_FILE",
           "ERPCTL_BACKUP_PASSPHRASE", "ERPCTL_FAILPOINTS")


def erpctl() -> str:
    beside = Path(sys.executable).with_name("erpctl")
    return str(beside) if beside.exists() else "erpctl"


def run(args, env, timeout=7200) -> subprocess.CompletedProcess:
    return subprocess.run([erpctl(), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def installation(root: Path, backend: str, scale: int, pg_url: str) -> tuple[dict, str | None]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(ERPCTL_DATA_DIR=str(root / "data"), ERPCTL_BACKUP_KEY_FILE=str(root / "backup.key"),
               ERPCTL_DRILL_POSTGRESQL_URL=pg_url)
    db = None
    if backend == "postgresql":
        from sqlalchemy import create_engine, text

        from erp_core import ops
        db = f"erpctl_bench_drills_{uuid.uuid4().hex[:8]}"
        eng = create_engine(ops.normalise_url(pg_url), isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'CREATE DATABASE "{db}"'))
        eng.dispose()
        env["ERPCTL_DATABASE_URL"] = pg_url.rsplit("/", 1)[0] + "/" + db
    if scale < 0:  # the caller makes the installation itself
        return env, db
    t0 = time.monotonic()
    for args in (("erp", "migrate"), ("erp", "seed", "--scale", scale), ("backup", "init", "--key-file",
                 root / "backup.key"), ("backup", "create")):
        r = run(args, env)
        if r.returncode:
            raise SystemExit(f"erpctl {' '.join(map(str, args))}: {r.returncode}\n{r.stderr[-2000:]}")
    print(f"{backend}: installation seeded at scale {scale} and backed up in {time.monotonic() - t0:.0f} s",
          flush=True)
    return env, db


UPGRADE = "upgrade-fails-halfway"
FIXTURE_KEY = ROOT / "tests" / "fixtures" / "release-keys" / "fixture.key"
WHEEL_1_0 = ROOT / "tests" / "fixtures" / "releases" / "erp_controlplane-1.0.0-py3-none-any.whl"


def tree_wheel(directory: Path) -> Path:
    """A wheel of this source tree, signed with the test fixture key (as the release build signs)."""
    from controlplane.release import signing

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(directory)],
                   check=True, capture_output=True, timeout=900)
    (wheel,) = directory.glob("erp_controlplane-*.whl")
    signing.sign(wheel, FIXTURE_KEY)
    return wheel


def old_installation(root: Path, backend: str, scale: int, pg_url: str, from_wheel: Path) -> tuple[dict, str | None]:
    """An installation serving the release of `from_wheel` (its own erpctl migrates and seeds it), with this
    tree's release installed beside it, backed up: what the upgrade drill rehearses the upgrade of."""
    env, db = installation(root, backend, -1, pg_url)
    env["ERPCTL_RELEASE_TRUSTED_KEYS"] = f"{FIXTURE_KEY}.pub"
    t0 = time.monotonic()
    for wheel in (from_wheel, tree_wheel(root / "wheel")):
        r = run(("--json", "release", "install", wheel), env)
        if r.returncode:
            raise SystemExit(f"erpctl release install {wheel}: {r.returncode}\n{r.stderr[-2000:]}")
    version = json.loads(run(("--json", "release", "list"), env).stdout)["releases"][0]["version"]
    own = root / "data" / "releases" / version / "env" / "bin" / "erpctl"
    steps = [(own, "erp", "migrate"), (own, "erp", "seed", "--scale", scale),
             (erpctl(), "release", "current", version), (erpctl(), "backup", "init", "--key-file", root / "backup.key"),
             (erpctl(), "backup", "create")]
    for args in steps:
        r = subprocess.run(list(map(str, args)), capture_output=True, text=True, env=env, timeout=7200,
                           stdin=subprocess.DEVNULL)
        if r.returncode:
            raise SystemExit(f"{' '.join(map(str, args))}: {r.returncode}\n{r.stderr[-2000:]}")
    print(f"{backend}: installation on release {version} seeded at scale {scale} and backed up in "
          f"{time.monotonic() - t0:.0f} s", flush=True)
    return env, db


def drop(pg_url: str, db: str | None) -> None:
    if db:
        from sqlalchemy import create_engine, text

        from erp_core import ops
        eng = create_engine(ops.normalise_url(pg_url), isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        eng.dispose()


def drill(env: dict, scenario: str, backend: str) -> dict:
    t0 = time.monotonic()
    r = run(("drill", "run", scenario, "--backend", backend, "--json"), env)
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    end = next((e for e in events if e["event"] == "end"), None)
    if end is None:
        return {"state": f"error (exit {r.returncode}): {r.stderr.strip()[-300:]}", "measured": {},
                "wall": time.monotonic() - t0}
    rec = json.loads(Path(end["record"]).read_text())
    return {"state": rec["state"], "measured": rec["measured"], "wall": time.monotonic() - t0,
            "findings": [f["text"] for f in rec["findings"]]}


def report_row(backend: str, name: str, out: dict) -> None:
    m = out["measured"]
    print(f"{backend:<10} {name:<26} {out['state']:<8} detection {m.get('detection_seconds')} s  "
          f"RTO {m.get('rto_seconds')} s  RPO {m.get('rpo_writes_lost')} writes / {m.get('rpo_seconds')} s"
          f"  of {m.get('acknowledged_writes')}  drill {m.get('duration_seconds')} s"
          f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    if out["state"] != "passed":
        print("    findings: " + " | ".join(out.get("findings", [])[:3]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=50)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--scenarios", default="", help="comma-separated (default: every shipped scenario)")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server (database postgres)")
    ap.add_argument("--upgrade-from-wheel", default=str(WHEEL_1_0),
                    help=f"{UPGRADE}: the release the installation serves before the upgrade (a signed wheel)")
    args = ap.parse_args()
    names = [n for n in args.scenarios.split(",") if n] or sorted(p.stem for p in (ROOT / "runbooks" / "drills")
                                                                      .glob("*.yaml"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    rows = []
    for backend in args.backends.split(","):
        groups = [(n, [x for x in names if (x == UPGRADE) == n]) for n in (False, True)]
        for upgrade, group in groups:
            if not group:
                continue
            root = Path(tempfile.mkdtemp(prefix=f"bench-drills-{backend}-"))
            env, db = None, None
            try:
                env, db = (old_installation(root, backend, args.scale, args.pg_url, Path(args.upgrade_from_wheel))
                           if upgrade else installation(root, backend, args.scale, args.pg_url))
                for name in group:
                    out = drill(env, name, backend)
                    rows.append((backend, name, out))
                    report_row(backend, name, out)
            finally:
                if env:
                    run(("stop",), env)
                shutil.rmtree(root, ignore_errors=True)
                drop(args.pg_url, db)
    print(json.dumps([{"backend": b, "scenario": n, "state": o["state"], **o["measured"]} for b, n, o in rows]))


if __name__ == "__main__":
    main()
