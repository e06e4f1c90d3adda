"""ERP releases through the Python API: real wheels installed into real environments, and the ERP of
a release served by a real child process.

Release 1.0 is the kept wheel (tests/fixtures/releases); the other release is a wheel built once per
session from this source tree, whatever its version (read from its METADATA, never assumed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from controlplane import config, release
from controlplane.errors import BadWheel, CannotListen, ReleaseConflict, ReleaseError, ReleaseIncompatible, ReleaseNotFound
from controlplane.evidence import EvidenceLog
from controlplane.release import runner
from controlplane.release.store import TMP_PREFIX
from tests.controlplane.cli_helpers import env, erpctl_path, port_is_free
from tests.controlplane.fault_helpers import seeded_rng

from tests.controlplane.release_helpers import (DB_1_0, FIXTURE_ADMIN, FIXTURE_KEY, REPO_ROOT, WHEEL_1_0,
                                               sign_for_tests, tree_wheel_and_version)


@pytest.fixture(scope="session")
def tree_wheel(tmp_path_factory) -> Path:
    return tree_wheel_and_version(tmp_path_factory)[0]


@pytest.fixture(scope="session")
def tree_version(tmp_path_factory) -> str:
    return tree_wheel_and_version(tmp_path_factory)[1]


def data_target(tmp_path: Path, name: str = "data", db: Path | None = None) -> config.Target:
    """A data directory; db: a copy of that SQLite database as its database (copied before use:
    opening it switches it to WAL)."""
    directory = tmp_path / name
    url = None
    if db is not None:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(db, directory / "erp.sqlite3")
        url = f"sqlite:///{directory / 'erp.sqlite3'}"
    return config.resolve(directory, url)


def leftovers(t: config.Target) -> list[str]:
    root = release.releases_dir(t)
    return sorted(p.name for p in root.iterdir() if p.name != ".lock") if root.exists() else []


def contract_future_schema(path: Path) -> None:
    """As if a newer release had contracted the schema past anything 1.0 knows."""
    with sqlite3.connect(path) as c:
        c.execute("UPDATE alembic_version SET version_num = '9999_future'")
        c.execute("INSERT INTO erp_schema_migrations (revision, stage, applied_at) "
                  "VALUES ('9999_future', 'contract', '2030-01-01 00:00:00.000000')")


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict | str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers=headers,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, status = resp.read().decode(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def login(base: str, username: str, password: str) -> str:
    status, body = http_json("POST", base + "/api/v1/auth/login", {"username": username, "password": password})
    assert status == 200, body
    return body["token"]


# ---- install, list, get, current --------------------------------------------------------------------

def test_install_1_0_then_list_get_and_reinstall_is_a_no_op(tmp_path, monkeypatch):
    t = data_target(tmp_path)
    done = release.install(t, WHEEL_1_0)
    r = done.release
    assert done.created
    assert r.version == "1.0.0" and r.erp_core_version == "1.0.0"
    assert r.path == t.data_dir / "releases" / "1.0.0" and r.wheel.is_file()
    assert r.wheel_sha256 == hashlib.sha256(WHEEL_1_0.read_bytes()).hexdigest()
    assert r.schema_head == "0001"
    with zipfile.ZipFile(WHEEL_1_0) as z:
        shipped = z.read("erp_core/migrations/versions/0001_initial.py")
    assert [(m["revision"], m["stage"], m["sha256"]) for m in r.migrations] == [
        ("0001", "expand", hashlib.sha256(shipped).hexdigest())]
    on_disk = json.loads((r.path / "release.json").read_text())
    assert on_disk["version"] == "1.0.0" and on_disk["wheel"]["sha256"] == r.wheel_sha256
    assert on_disk["python"]["version"] and on_disk["installed_at"]

    # Its Python imports the release's erp_core, not this tree's, even when everything points at the tree.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.chdir(REPO_ROOT)
    probe = runner.call(r.python, "info")
    assert Path(probe["erp_core_file"]).resolve().is_relative_to(r.env.resolve())
    assert probe["erp_core_version"] == "1.0.0" and probe["schema_head"] == "0001"

    assert release.releases(t) == [r]
    assert release.get(t, "1.0.0") == r
    assert release.current(t) is None
    with pytest.raises(ReleaseNotFound) as exc:
        release.get(t, "9.9.9")
    assert exc.value.exit_code == 36 and "1.0.0" in exc.value.detail

    again = release.install(t, WHEEL_1_0)
    assert not again.created and again.release == r and again.release.installed_at == r.installed_at
    assert leftovers(t) == ["1.0.0"]
    installs = [rec for rec in EvidenceLog(t.data_dir).records() if rec["kind"] == "release_install"]
    assert len(installs) == 1 and installs[0]["data"]["sha256"] == r.wheel_sha256
    assert EvidenceLog(t.data_dir).verify() == (1, [])


def _corrupt(path: Path) -> None:
    """Flip bytes inside the compressed data of a member (its CRC no longer matches)."""
    with zipfile.ZipFile(WHEEL_1_0) as z:
        info = z.getinfo("erp_core/app.py")
    data = bytearray(WHEEL_1_0.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 10
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _other_project(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("other_project/__init__.py", "")
        z.writestr("other_project-1.0.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: other-project\n"
                                                             "Version: 1.0.0\n")
        z.writestr("other_project-1.0.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")


def _without_erp(path: Path) -> None:
    with zipfile.ZipFile(WHEEL_1_0) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("erp_core/"):
                dst.writestr(item, src.read(item))


BAD_WHEELS = {
    "not-a-zip": ("erp_controlplane-1.0.0-py3-none-any.whl", lambda p: p.write_text("not a zip\n"),
                  "not a zip archive"),
    "not-a-wheel-name": ("erp_controlplane-1.0.0.tar.gz", lambda p: shutil.copy(WHEEL_1_0, p), "ends in .whl"),
    "truncated": ("erp_controlplane-1.0.0-py3-none-any.whl",
                  lambda p: p.write_bytes(WHEEL_1_0.read_bytes()[: WHEEL_1_0.stat().st_size // 2]),
                  "not a zip archive"),
    "corrupt-member": ("erp_controlplane-1.0.0-py3-none-any.whl", _corrupt, "corrupt"),
    "another-project": ("other_project-1.0.0-py3-none-any.whl", _other_project, "'other-project', not of"),
    "name-disagrees-with-metadata": ("erp_controlplane-9.9.9-py3-none-any.whl",
                                     lambda p: shutil.copy(WHEEL_1_0, p), "its METADATA says"),
    "no-erp-inside": ("erp_controlplane-1.0.0-py3-none-any.whl", _without_erp, "without the ERP"),
}


@pytest.mark.parametrize("case", sorted(BAD_WHEELS))
def test_what_is_not_a_release_wheel_is_refused_and_leaves_nothing(tmp_path, case):
    name, make, says = BAD_WHEELS[case]
    wheel = tmp_path / name
    make(wheel)
    sign_for_tests(wheel)  # signed by a trusted key: the checks after the signature's refuse it
    t = data_target(tmp_path)
    with pytest.raises(BadWheel) as exc:
        release.install(t, wheel)
    assert exc.value.exit_code == 37
    assert says in exc.value.detail and exc.value.fix
    assert leftovers(t) == [] and release.releases(t) == []


def test_another_wheel_of_an_installed_version_is_refused(tmp_path):
    t = data_target(tmp_path)
    first = release.install(t, WHEEL_1_0).release
    other = tmp_path / "elsewhere" / WHEEL_1_0.name
    other.parent.mkdir()
    shutil.copy(WHEEL_1_0, other)
    with zipfile.ZipFile(other, "a") as z:  # same METADATA, other content: another build of "1.0.0"
        z.writestr("erp_core/rebuilt.txt", "another build\n")
    sign_for_tests(other)
    with pytest.raises(ReleaseConflict) as exc:
        release.install(t, other)
    assert exc.value.exit_code == 39 and "already installed from another wheel" in exc.value.detail
    assert release.releases(t) == [first] and leftovers(t) == ["1.0.0"]


# ---- current -----------------------------------------------------------------------------------------

def test_the_tree_release_installs_beside_1_0_and_current_switches(tmp_path, tree_wheel, tree_version):
    from erp_core.db import code_head, known_migrations

    t = data_target(tmp_path)
    r10 = release.install(t, WHEEL_1_0).release
    tree = release.install(t, tree_wheel).release
    assert tree.version == tree_version and tree.path.name == tree_version
    assert tree.schema_head == code_head()  # the wheel is this tree: its head, its stages
    assert [(m["revision"], m["stage"]) for m in tree.migrations] == [(m["revision"], m["stage"])
                                                                       for m in known_migrations()]
    assert sorted(r.version for r in release.releases(t)) == sorted(["1.0.0", tree_version])
    probe = runner.call(tree.python, "info")
    assert Path(probe["erp_core_file"]).resolve().is_relative_to(tree.env.resolve())

    with pytest.raises(ReleaseNotFound):
        release.set_current(t, "0.0.1")
    assert release.current(t) is None

    switched = release.set_current(t, "1.0.0", reason="test")  # no database yet: any release may start it
    assert switched["changed"] and switched["from"] is None and switched["schema"]["database"] == "missing"
    link = release.releases_dir(t) / "current"
    assert link.is_symlink() and os.readlink(link) == "1.0.0" and release.current(t) == r10
    assert release.set_current(t, tree_version)["from"] == "1.0.0" and release.current(t) == tree
    assert not release.set_current(t, tree_version)["changed"]
    assert leftovers(t) == sorted(["1.0.0", tree_version, "current"])
    switches = [rec["data"] for rec in EvidenceLog(t.data_dir).records() if rec["kind"] == "release_switch"]
    assert [(s["from"], s["to"]) for s in switches] == [(None, "1.0.0"), ("1.0.0", tree_version)]


def test_a_release_is_checked_with_its_own_code_against_the_database(tmp_path, tree_wheel, tree_version):
    from erp_core.db import code_head

    t = data_target(tmp_path, db=DB_1_0)
    r10 = release.install(t, WHEEL_1_0).release
    tree = release.install(t, tree_wheel).release
    ok = release.check_database(t, r10)
    assert ok["supported"] and ok["current"] == "0001" and ok["code_head"] == "0001"

    # The tree's code says in its own words why it cannot run on a 1.0 database (its schema is older).
    assert code_head() != "0001"
    assert not release.check_database(t, tree)["supported"]
    with pytest.raises(ReleaseIncompatible) as exc:
        release.set_current(t, tree_version)
    assert exc.value.exit_code == 38 and "older than the code's" in exc.value.detail
    assert release.current(t) is None
    release.set_current(t, "1.0.0")

    contract_future_schema(t.sqlite_path)
    with pytest.raises(ReleaseIncompatible) as exc:
        release.require_compatible(t, r10)
    assert "contract migrations this code predates: 9999_future" in exc.value.detail
    assert release.check_invariants(t, r10, FIXTURE_KEY)["ok"]


# ---- serving a release ------------------------------------------------------------------------------

def test_the_erp_of_release_1_0_serves_from_its_own_environment(tmp_path):
    t = data_target(tmp_path, db=DB_1_0)
    r = release.install(t, WHEEL_1_0).release
    erp = release.ErpProcess(r, t.database_url, FIXTURE_KEY)
    try:
        erp.start()
        ready = erp.wait_ready(timeout=60)
        assert ready["ready"] and ready["checks"]["schema"]["current"] == "0001"
        base = erp.url
        # The 1.0 code serves, from the release's environment (not this tree's erp_core).
        assert erp.serving_info["version"] == "1.0.0"
        assert Path(erp.serving_info["erp_core_file"]).resolve().is_relative_to(r.env.resolve())
        assert http_json("GET", base + "/healthz") == (200, {"status": "ok", "version": "1.0.0"})
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'erp_build_info{schema_revision="0001",version="1.0.0"} 1.0' in metrics

        token = login(base, *FIXTURE_ADMIN)
        status, orders = http_json("GET", base + "/api/v1/sales-orders", token=token)
        assert status == 200 and orders["total"] == 163 and orders["items"]

        # Secrets travel in the environment, not on the command line `ps` shows.
        cmdline = Path(f"/proc/{erp.pid}/cmdline").read_bytes().decode()
        assert FIXTURE_KEY not in cmdline and "sqlite" not in cmdline and str(r.python) in cmdline
    finally:
        t0 = time.monotonic()
        rc = erp.stop()
    assert rc == 0, erp.stderr_tail()
    assert time.monotonic() - t0 < 5 and port_is_free(erp.port)


def test_an_erp_that_dies_or_cannot_listen_is_reported_with_its_own_words(tmp_path):
    t = data_target(tmp_path, db=DB_1_0)
    r = release.install(t, WHEEL_1_0).release
    broken = release.ErpProcess(r, "nosuchdialect://nowhere/db", FIXTURE_KEY).start()
    with pytest.raises(ReleaseError) as exc:
        broken.wait_ready(timeout=60)
    assert "exited with code 1 before it was serving" in exc.value.detail
    assert "nosuchdialect" in exc.value.detail  # the tail of its stderr
    broken.stop()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = release.ErpProcess(r, t.database_url, FIXTURE_KEY, port=port).start()
        with pytest.raises(CannotListen) as exc:
            taken.wait_serving(timeout=60)
        taken.stop()
    assert f"127.0.0.1:{port}" in exc.value.detail and exc.value.exit_code == 11


# ---- an install killed at any point -----------------------------------------------------------------

def _install_cli(t: config.Target, wheel: Path) -> subprocess.Popen:
    return subprocess.Popen([erpctl_path(), "release", "install", str(wheel), "--data-dir", str(t.data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def _building(t: config.Target) -> bool:
    return any(name.startswith(TMP_PREFIX) for name in leftovers(t))


def _wait_for(proc: subprocess.Popen, condition) -> float | None:
    """Poll until `condition()` holds (its time) or the process ends (None)."""
    while proc.poll() is None:
        if condition():
            return time.monotonic()
        time.sleep(0.002)
    return time.monotonic() if condition() else None


def test_an_install_killed_at_any_point_leaves_no_listed_half_release(tmp_path):
    # How long the build takes, from its temporary directory appearing to the release being published
    # (the shorter of two runs: the first may pay for cold caches).
    builds = []
    for run in range(2):
        timing = data_target(tmp_path, f"timing-{run}")
        whole = _install_cli(timing, WHEEL_1_0)
        started = _wait_for(whole, lambda: _building(timing))
        published = _wait_for(whole, lambda: (release.releases_dir(timing) / "1.0.0").exists())
        assert whole.wait(timeout=300) == 0, whole.stderr.read()
        assert started is not None and published is not None
        builds.append(published - started)
    build = min(builds)

    rng = seeded_rng(20261125)
    fractions = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, rng.uniform(0, 1), rng.uniform(0, 1)]
    interrupted = 0
    for i, fraction in enumerate(fractions):
        t = data_target(tmp_path, f"killed-{i}")
        proc = _install_cli(t, WHEEL_1_0)
        if _wait_for(proc, lambda: _building(t)) is not None:
            time.sleep(fraction * build)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        listed = release.releases(t)
        interrupted += proc.returncode == -signal.SIGKILL and not listed and _building(t)
        # Whatever the kill left, a listed release is a complete one: its own Python answers for it.
        for r in listed:
            assert r.version == "1.0.0" and runner.call(r.python, "info")["erp_core_version"] == "1.0.0"
        again = release.install(t, WHEEL_1_0)  # waits for a step the kill left running, then cleans up
        assert again.release.version == "1.0.0"
        assert not _building(t), (fraction, leftovers(t))
        assert release.releases(t) == [again.release]
    assert interrupted >= len(fractions) - 3, \
        f"only {interrupted} of {len(fractions)} kills interrupted a build ({build:.2f} s)"
