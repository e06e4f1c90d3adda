"""erpctl's backups beside restic's and borg's, each run as an operator runs it: a whole process.

    python bench/backup.py                  # about 600 MB (erpctl erp seed --scale 1277), 3 rounds
    python bench/backup.py --size-mb 100 --rounds 3
    python bench/backup.py --json           # the figures as one JSON object
    python bench/backup.py --source DIR     # an existing data directory's erp.sqlite3 (and field.key)
    python bench/backup.py --backups-only   # init, full and second backup only (no check, restore, L3)
    python bench/backup.py --json > f.json; python bench/backup.py --from-json f.json   # the table again

Every figure is the time of a command run as a process (the installed `erpctl` beside this Python,
`restic`, `borg`), with the passphrase in the environment, from a fresh repository, on the same
SQLite ERP database file:

    full backup       erpctl backup create | restic backup | borg create --compression zstd,1
                      (wall time, and CPU time of the process and its children)
    repository        its size on disk after the full backup
    scattered update  1 % of the rows of the mutable document and master-data tables updated at
                      random, then a second backup: its time, and the bytes the repository grew by
    check             erpctl backup verify --level 1 | restic check --read-data | borg check --verify-data
    restore           erpctl backup restore latest --target DIR (materialize, then L1-L3 before it
                      says yes) | restic restore latest | borg extract
    L1-L3             erpctl backup verify --level 3 (erpctl only)

Each round starts from a fresh copy of the database and fresh repositories; within a round each
step runs for every tool in turn, the order alternating between rounds (a, b, c; c, b, a; ...).
The table shows medians of the rounds, and the ratios of erpctl's to each anchor's; below it each
target (full backup <= borg's wall time, repository <= restic's, scattered-update bytes <= 15 % of
restic's), met or missed, with the ratio of every round. Start-up of
erpctl (`erpctl --version`, and `erpctl backup create` minus the time its manifest records) is
printed beside, so the figures can be read.

The generated database is cached under --cache (seeding takes about 1-2 s per MB, once; a lock keeps
two runs from seeding the same one); every run works in a fresh directory under --work, removed
afterwards unless --keep. restic's repository is format 2 (zstd); borg's is repokey-blake2, its
cache and config under the work directory.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB_PER_SCALE = 0.47  # erpctl erp seed (copies of a year, erp_core/seedcopy.py): about 0.47 MB of SQLite per unit
PASSPHRASE = "bench passphrase"
MUTABLE = (("sales_orders", "notes"), ("purchase_orders", "notes"), ("invoices", "supplier_reference"),
           ("partners", "address"), ("products", "name"), ("reorder_rules", "reorder_quantity"))
TOOLS = ("erpctl", "restic", "borg")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def erpctl_exe() -> str:
    return str(Path(sys.executable).with_name("erpctl"))


def clean_env(**extra) -> dict:
    """This environment without erpctl's, restic's or borg's own settings, plus `extra`. Python may
    cache bytecode (as an installed package has it: pip compiles it), or every erpctl run would
    compile the project's modules again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERPCTL_", "ERP_FIELD_KEY", "RESTIC_", "BORG_"))
           and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], env: dict, cwd: Path | None = None) -> tuple[str, float, float]:
    """(stdout, wall seconds, CPU seconds of the process and the children it waited for)."""
    c0, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout, wall, cpu


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---- the database ---------------------------------------------------------------------------------

def ensure_database(size_mb: float, cache: Path) -> tuple[Path, dict]:
    """The seeded database of about size_mb (generated once, under a lock: two runs may share a cache)."""
    scale = max(1, min(2000, round(size_mb / MB_PER_SCALE)))
    d = cache / f"scale-{scale}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".scale-{scale}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = d / "ready.json"
        if ready.exists():
            return d, json.loads(ready.read_text())
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        log(f"generating the ERP database: erpctl erp seed --scale {scale} (about {scale * MB_PER_SCALE:.0f} MB, "
            f"roughly {scale * 0.6 / 60:.0f} min; cached in {d})")
        t0 = time.perf_counter()
        env = clean_env()
        run([erpctl_exe(), "--json", "erp", "migrate", "--data-dir", str(d)], env)
        out = json.loads(run([erpctl_exe(), "--json", "erp", "seed", "--scale", str(scale), "--data-dir", str(d)],
                             env)[0])
        conn = sqlite3.connect(d / "erp.sqlite3")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        info = {"scale": scale, "seed_seconds": round(time.perf_counter() - t0, 1),
                "bytes": (d / "erp.sqlite3").stat().st_size, "created": out.get("created")}
        ready.write_text(json.dumps(info))
        return d, info


def scatter_update(db: Path, fraction: float = 0.01, seed: int = 7) -> int:
    """Update `fraction` of the rows of the mutable tables, at random (the invariants still hold)."""
    rng = random.Random(seed)
    conn = sqlite3.connect(db, isolation_level=None)
    changed = 0
    conn.execute("BEGIN")
    for table, column in MUTABLE:
        ids = [r[0] for r in conn.execute(f'SELECT id FROM "{table}"')]
        for i in rng.sample(ids, min(len(ids), max(1, int(len(ids) * fraction)))):
            value = rng.randint(50, 500) if column == "reorder_quantity" else f"edited {rng.random():.6f}"
            conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE id = ?', (value, i))
            changed += 1
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # restic and borg read the main file only
    conn.close()
    return changed


# ---- the tools, each a process per step ----------------------------------------------------------

class Erpctl:
    name = "erpctl"

    def __init__(self, work: Path, data: Path):
        self.repo, self.data = work / "erpctl-repo", data
        self.env = clean_env(ERPCTL_BACKUP_PASSPHRASE=PASSPHRASE)
        self.exe = erpctl_exe()
        self.manifest_seconds: list[float] = []  # the time each backup's manifest records (its own work)

    def _erpctl(self, *args) -> tuple[str, float, float]:
        return run([self.exe, "--json", *args, "--repo", f"file://{self.repo}", "--data-dir", str(self.data)],
                   self.env)

    def version(self) -> str:
        return run([self.exe, "--version"], self.env)[0].strip()

    def init(self) -> tuple[float, float]:
        out, wall, cpu = self._erpctl("backup", "init")
        self.init_result = json.loads(out)
        return wall, cpu

    def backup(self, db: Path) -> tuple[float, float]:
        out, wall, cpu = self._erpctl("backup", "create")
        self.manifest_seconds.append(json.loads(out)["duration_seconds"])
        return wall, cpu

    def check(self) -> tuple[float, float]:
        out, wall, cpu = self._erpctl("backup", "verify", "--level", "1")
        assert json.loads(out)["ok"], out[:2000]
        return wall, cpu

    def restore(self, dest: Path) -> tuple[float, float]:
        out, wall, cpu = self._erpctl("backup", "restore", "latest", "--target", str(dest))
        return wall, cpu

    def verify_l3(self) -> tuple[float, float, dict]:
        out, wall, cpu = self._erpctl("backup", "verify", "--level", "3")
        result = json.loads(out)
        assert result["ok"], out[:2000]
        levels = {f"L{lv['level']}": lv["duration_seconds"] for lv in result["backups"][0]["levels"]}
        return wall, cpu, levels


class Restic:
    name = "restic"

    def __init__(self, work: Path):
        self.repo, self.exe = work / "restic-repo", shutil.which("restic")
        self.env = clean_env(RESTIC_PASSWORD=PASSPHRASE, RESTIC_REPOSITORY=str(self.repo),
                             RESTIC_CACHE_DIR=str(work / "restic-cache"))

    def version(self) -> str:
        return run([self.exe, "version"], self.env)[0].strip()

    def init(self) -> tuple[float, float]:
        return run([self.exe, "init", "--repository-version", "2"], self.env)[1:]

    def backup(self, db: Path) -> tuple[float, float]:
        return run([self.exe, "backup", "--json", "--compression", "auto", str(db)], self.env)[1:]

    def check(self) -> tuple[float, float]:
        return run([self.exe, "check", "--read-data"], self.env)[1:]

    def restore(self, dest: Path) -> tuple[float, float]:
        return run([self.exe, "restore", "latest", "--target", str(dest)], self.env)[1:]


class Borg:
    name = "borg"

    def __init__(self, work: Path):
        self.repo, self.exe, self.n = work / "borg-repo", shutil.which("borg"), 0
        self.env = clean_env(BORG_PASSPHRASE=PASSPHRASE, BORG_BASE_DIR=str(work / "borg-home"),
                             BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

    def version(self) -> str:
        return run([self.exe, "--version"], self.env)[0].strip()

    def init(self) -> tuple[float, float]:
        return run([self.exe, "init", "--encryption", "repokey-blake2", str(self.repo)], self.env)[1:]

    def backup(self, db: Path) -> tuple[float, float]:
        self.n += 1
        return run([self.exe, "create", "--compression", "zstd,1", f"{self.repo}::b{self.n}", str(db)], self.env)[1:]

    def check(self) -> tuple[float, float]:
        return run([self.exe, "check", "--verify-data", str(self.repo)], self.env)[1:]

    def restore(self, dest: Path) -> tuple[float, float]:
        dest.mkdir(parents=True, exist_ok=True)
        return run([self.exe, "extract", f"{self.repo}::b{self.n}"], self.env, cwd=dest)[1:]


# ---- one round ------------------------------------------------------------------------------------

def one_round(source: Path, work: Path, order: list[str], fig: dict, backups_only: bool = False) -> None:
    """Fresh copies and repositories; every step for each tool in `order` (backups_only: init, full and
    second backup); figures appended to fig."""
    if work.exists():
        shutil.rmtree(work)
    data = work / "data"
    data.mkdir(parents=True)
    shutil.copy(source / "erp.sqlite3", data / "erp.sqlite3")
    shutil.copy(source / "field.key", data / "field.key")
    (data / "field.key").chmod(0o600)
    db = data / "erp.sqlite3"
    tools = {"erpctl": Erpctl(work, data), "restic": Restic(work), "borg": Borg(work)}

    def step(label: str, fn, *args):
        for name in order:
            wall, cpu = fn(tools[name], *args)[:2]
            fig.setdefault(f"{name}_{label}_seconds", []).append(wall)
            fig.setdefault(f"{name}_{label}_cpu_seconds", []).append(cpu)
            log(f"  {name} {label}: {wall:.2f} s ({cpu:.2f} s CPU)")

    step("init", lambda t: t.init())
    fig.setdefault("erpctl_dictionary_bytes", []).append(tools["erpctl"].init_result.get("dictionary_bytes") or 0)
    step("full_backup", lambda t: t.backup(db))
    for name, t in tools.items():
        fig.setdefault(f"{name}_repo_bytes_after_full", []).append(du(t.repo))
    fig.setdefault("rows_updated", []).append(scatter_update(db))
    step("second_backup", lambda t: t.backup(db))
    for name, t in tools.items():
        fig.setdefault(f"{name}_second_bytes_added", []).append(du(t.repo) - fig[f"{name}_repo_bytes_after_full"][-1])
    fig.setdefault("erpctl_manifest_seconds", []).extend(tools["erpctl"].manifest_seconds)
    if backups_only:
        return
    step("check", lambda t: t.check())
    step("restore", lambda t: t.restore(work / f"restore-{t.name}"))
    for name in tools:
        shutil.rmtree(work / f"restore-{name}", ignore_errors=True)
    wall, cpu, levels = tools["erpctl"].verify_l3()
    fig.setdefault("erpctl_l1_l3_seconds", []).append(wall)
    fig.setdefault("erpctl_l1_l3_levels", []).append(levels)
    log(f"  erpctl verify --level 3: {wall:.2f} s {levels}")


def startup(env: dict, repeat: int = 5) -> dict:
    """erpctl's start-up: `erpctl --help`, `--version` and `backup --help` beside `python -c pass` (the floor),
    interleaved, the median of `repeat` runs each (bench/startup.py times more commands)."""
    cases = {"python": [sys.executable, "-c", "pass"], "erpctl_help": [erpctl_exe(), "--help"],
             "erpctl_version": [erpctl_exe(), "--version"], "erpctl_backup_help": [erpctl_exe(), "backup", "--help"]}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(repeat):
        for label in list(cases)[r % len(cases):] + list(cases)[:r % len(cases)]:
            times[label].append(run(cases[label], env)[1])
    return {f"{label}_seconds": statistics.median(ts) for label, ts in times.items()}


def bench(args) -> dict:
    for exe in ("restic", "borg"):
        if not shutil.which(exe):
            sys.exit(f"{exe} is not installed: apt-get install -y --no-install-recommends restic borgbackup")
    if args.source:
        source, info = Path(args.source), {"scale": None, "source": str(Path(args.source).resolve())}
    else:
        source, info = ensure_database(args.size_mb, Path(args.cache))
    root = Path(tempfile.mkdtemp(prefix="erpctl-bench-", dir=args.work))
    size = (source / "erp.sqlite3").stat().st_size
    fig: dict = {"database_bytes": size, "scale": info["scale"], "source": info.get("source"),
                 "cpus": os.cpu_count(), "rounds": args.rounds, "backups_only": args.backups_only,
                 "load_average_start": os.getloadavg(),
                 "versions": {"erpctl": Erpctl(root, root).version(), "restic": Restic(root).version(),
                              "borg": Borg(root).version()}}
    log(f"database {size / 1e6:.0f} MB ({info.get('source') or 'scale ' + str(info['scale'])}), work in {root}")
    try:
        fig.update(startup(clean_env()))
        for r in range(args.rounds):
            order = list(TOOLS) if r % 2 == 0 else list(reversed(TOOLS))
            order = order[r // 2 % 3:] + order[:r // 2 % 3]  # after the first pair, another tool goes first
            fig.setdefault("orders", []).append(order)
            log(f"round {r + 1} of {args.rounds}: {', '.join(order)}")
            one_round(source, root / f"round-{r + 1}", order, fig, args.backups_only)
            if not args.keep:
                shutil.rmtree(root / f"round-{r + 1}", ignore_errors=True)
        fig["load_average_end"] = os.getloadavg()
        return fig
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


# ---- the table ------------------------------------------------------------------------------------

def med(fig: dict, key: str):
    values = fig.get(key)
    return statistics.median(values) if values else None


ROWS = (  # label, key (tool_<key>), unit divisor, format
    ("init (s)", "init_seconds", 1, "{:.2f}"),
    ("full backup (s)", "full_backup_seconds", 1, "{:.2f}"),
    ("  CPU time of it (s)", "full_backup_cpu_seconds", 1, "{:.2f}"),
    ("repository after the full backup (MB)", "repo_bytes_after_full", 1e6, "{:.1f}"),
    ("2nd backup after 1 % scattered update (s)", "second_backup_seconds", 1, "{:.2f}"),
    ("  bytes added by it (MB, on disk)", "second_bytes_added", 1e6, "{:.2f}"),
    ("check: verify L1 / check --read-data / --verify-data (s)", "check_seconds", 1, "{:.2f}"),
    ("restore the file (s; erpctl's with L1-L3)", "restore_seconds", 1, "{:.2f}"),
)


def table(f: dict) -> str:
    load = " -> ".join("/".join(f"{x:.2f}" for x in f[k]) for k in ("load_average_start", "load_average_end"))
    v = f["versions"]
    origin = f.get("source") or f"erpctl erp seed --scale {f['scale']}"
    out = [f"database {f['database_bytes'] / 1e6:.0f} MB ({origin}), "
           f"{med(f, 'rows_updated'):.0f} rows updated, {f['cpus']} CPUs, load average {load}",
           f"{v['erpctl']}, {v['restic']}, {v['borg']}; medians of {f['rounds']} rounds, order "
           + "; ".join(",".join(o) for o in f["orders"]),
           f"{'':<58}{'erpctl':>9}{'restic':>9}{'borg':>9}{'/restic':>9}{'/borg':>8}"]
    for label, key, div, fmt in ROWS:
        vals = [med(f, f"{t}_{key}") for t in TOOLS]
        vals = [None if x is None else x / div for x in vals]
        if all(x is None for x in vals):  # a step not run (--backups-only)
            continue
        cells = "".join(f"{fmt.format(x) if x is not None else '-':>9}" for x in vals)
        ratios = "".join(f"{(vals[0] / x if x else 0):>{w}.2f}" for x, w in ((vals[1], 9), (vals[2], 8)))
        out.append(f"{label:<58}{cells}{ratios}")
    if f.get("erpctl_l1_l3_levels"):
        levels = f["erpctl_l1_l3_levels"][len(f["erpctl_l1_l3_levels"]) // 2]
        out.append(f"erpctl verify --level 3 (L1-L3): {med(f, 'erpctl_l1_l3_seconds'):.2f} s "
                   f"({', '.join(f'{k} {x}' for k, x in levels.items())})")
    own = med(f, "erpctl_manifest_seconds")
    full = med(f, "erpctl_full_backup_seconds")
    out.append(f"erpctl start-up (median of 5): erpctl --help {f['erpctl_help_seconds']:.2f} s, --version "
               f"{f['erpctl_version_seconds']:.2f} s, backup --help {f['erpctl_backup_help_seconds']:.2f} s "
               f"(python -c pass {f['python_seconds']:.2f} s)" + ("" if own is None else
               f"; a backup's own work (its manifest's duration, median of the full and second backups) "
               f"{own:.2f} s, the full backup's process {full:.2f} s (the rest: start-up, key derivation, exit)"))
    out.append(f"erpctl's repository: zstd dictionary of {med(f, 'erpctl_dictionary_bytes') / 1024:.0f} KiB")
    out.extend(targets(f))
    return "\n".join(out)


TARGETS = (  # label, erpctl's key, the anchor's key, bound (erpctl <= bound x anchor)
    ("full backup wall time <= borg's", "erpctl_full_backup_seconds", "borg_full_backup_seconds", 1.0),
    ("repository after the full backup <= restic's", "erpctl_repo_bytes_after_full", "restic_repo_bytes_after_full",
     1.0),
    ("scattered-update bytes <= 15 % of restic's", "erpctl_second_bytes_added", "restic_second_bytes_added", 0.15),
)


def targets(f: dict) -> list[str]:
    """Each target of the bench, met or missed, with erpctl's ratio to its anchor (medians) and the
    ratio of each round (the same round's runs, side by side)."""
    out = []
    for label, mine, anchor, bound in TARGETS:
        ratio = med(f, mine) / med(f, anchor)
        rounds = ", ".join(f"{a / b:.2f}" for a, b in zip(f[mine], f[anchor]))
        out.append(f"target {label}: {'met' if ratio <= bound else 'MISSED'} ({ratio:.2f}x; rounds {rounds})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=600, help="database size to generate (default 600)")
    p.add_argument("--source", default=None, metavar="DIR",
                   help="bench the ERP database of this data directory (erp.sqlite3, its WAL folded in, and "
                        "field.key) instead of a generated one")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each tool once per step in each (default 3)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "erpctl-bench-cache"),
                   help="where generated databases are kept between runs (shared safely by concurrent runs)")
    p.add_argument("--work", default=None, help="parent of this run's own work directory (default: the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--backups-only", action="store_true",
                   help="init, full backup and the backup after the scattered update only (no check, restore, L3)")
    p.add_argument("--from-json", default=None, metavar="FILE",
                   help="print the table of the figures a --json run wrote to FILE (runs nothing)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()
    if args.from_json:
        print(table(json.loads(Path(args.from_json).read_text())))
        return
    fig = bench(args)
    print(json.dumps(fig, indent=1, default=str) if args.json else table(fig))


if __name__ == "__main__":
    main()
