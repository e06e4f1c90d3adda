"""`erpctl release install|list|current` as an operator runs them: output, --json, exit codes, evidence."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from controlplane import config
from tests.controlplane.cli_helpers import erpctl, ok, ok_json
from tests.controlplane.release_helpers import (DB_1_0, WHEEL_1_0, build_tree_wheel, sign_for_tests,
                                               tree_wheel_and_version)
from tests.controlplane.test_release import BAD_WHEELS, contract_future_schema, leftovers


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    """(wheel, version) of the release built from this source tree."""
    return tree_wheel_and_version(tmp_path_factory)


def test_install_list_show_and_switch(tmp_path):
    data = tmp_path / "data"
    r = ok("release", "list", "--data-dir", data)
    assert "no release installed" in r.stdout and "bundled erp_core" in r.stdout

    first = ok_json("release", "install", WHEEL_1_0, "--data-dir", data)
    assert first["installed"] is True and first["version"] == "1.0.0" and first["schema_head"] == "0001"
    again = ok("release", "install", WHEEL_1_0, "--data-dir", data)
    assert "already installed" in again.stdout and "nothing to do" in again.stdout

    listed = ok_json("release", "list", "--data-dir", data)
    assert [x["version"] for x in listed["releases"]] == ["1.0.0"] and listed["current"] is None
    assert "no release is current" in ok("release", "current", "--data-dir", data).stdout
    assert ok_json("release", "current", "--data-dir", data)["current"] is None

    switched = ok("release", "current", "1.0.0", "--reason", "first release", "--data-dir", data)
    assert "-> 1.0.0" in switched.stdout and "does not migrate" in switched.stdout
    assert ok_json("release", "current", "--data-dir", data)["current"]["version"] == "1.0.0"
    table = ok("release", "list", "--data-dir", data).stdout.splitlines()
    assert any(line.startswith("* 1.0.0") for line in table), table
    assert "already current" in ok("release", "current", "1.0.0", "--data-dir", data).stdout

    verified = ok_json("evidence", "verify", "--data-dir", data)
    records = [json.loads(line) for line in (data / "evidence.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["release_install", "release_switch"]
    assert records[1]["data"]["reason"] == "first release" and records[1]["data"]["to"] == "1.0.0"
    assert verified["ok"] and verified["records"] == 2


def test_refusals_have_their_exit_codes_and_a_fix(tmp_path):
    data = tmp_path / "data"
    for case in ("not-a-zip", "another-project", "corrupt-member"):
        name, make, says = BAD_WHEELS[case]
        wheel = tmp_path / case / name
        wheel.parent.mkdir()
        make(wheel)
        sign_for_tests(wheel)
        r = erpctl("release", "install", wheel, "--data-dir", data)
        assert r.returncode == 37, (case, r.stderr)
        assert says in r.stderr and "fix:" in r.stderr and "Traceback" not in r.stderr
    assert leftovers(config.resolve(data)) == []

    ok("release", "install", WHEEL_1_0, "--data-dir", data)
    rebuilt = tmp_path / "rebuilt" / WHEEL_1_0.name
    rebuilt.parent.mkdir()
    shutil.copy(WHEEL_1_0, rebuilt)
    with zipfile.ZipFile(rebuilt, "a") as z:
        z.writestr("erp_core/rebuilt.txt", "another build\n")
    sign_for_tests(rebuilt)
    r = erpctl("release", "install", rebuilt, "--data-dir", data)
    assert r.returncode == 39 and "already installed from another wheel" in r.stderr

    r = erpctl("--json", "release", "current", "7.7.7", "--data-dir", data)
    assert r.returncode == 36
    assert json.loads(r.stderr.splitlines()[-1])["exit_code"] == 36

    shutil.copy(DB_1_0, data / "erp.sqlite3")
    contract_future_schema(data / "erp.sqlite3")
    r = erpctl("release", "current", "1.0.0", "--data-dir", data)
    assert r.returncode == 38
    assert "contract migrations this code predates: 9999_future" in r.stderr and "fix:" in r.stderr
    assert ok_json("release", "current", "--data-dir", data)["current"] is None


def test_the_tree_release_beside_1_0_and_a_switch_the_schema_refuses(tmp_path, tree):
    tree_wheel, tree_version = tree
    data = tmp_path / "data"
    ok("release", "install", WHEEL_1_0, "--data-dir", data)
    assert ok_json("release", "install", tree_wheel, "--data-dir", data)["version"] == tree_version
    shutil.copy(DB_1_0, data / "erp.sqlite3")  # a 1.0 database: schema 0001
    ok("release", "current", "1.0.0", "--data-dir", data)

    # The new code refuses an older schema, and says so in its own words; nothing switched.
    r = erpctl("release", "current", tree_version, "--data-dir", data)
    assert r.returncode == 38, r.stderr
    assert f"release {tree_version} cannot run on the database" in r.stderr
    assert "older than the code's" in r.stderr
    listed = ok_json("release", "list", "--data-dir", data)
    assert listed["current"] == "1.0.0"
    assert {x["version"]: x["current"] for x in listed["releases"]} == {"1.0.0": True, tree_version: False}
    assert build_tree_wheel(tmp_path / "again") == tree_wheel  # built once per session


def test_remove_refuses_what_is_in_use_and_removes_the_rest(tmp_path, tree):
    """`erpctl release remove`: never the current release, one `erpctl up` still serves, or one an upgrade
    in progress switches between; the release the last upgrade came from only with --force (its
    rollback switches back to it). Each removal is in the evidence log."""
    import dataclasses
    import os

    from controlplane.release.supervisor import SERVING_FILE
    from controlplane.upgrade import state as upgrade_state

    tree_wheel, tree_version = tree
    data = tmp_path / "data"
    ok("release", "install", WHEEL_1_0, "--data-dir", data)
    ok("release", "install", tree_wheel, "--data-dir", data)
    shutil.copy(DB_1_0, data / "erp.sqlite3")
    ok("release", "current", "1.0.0", "--data-dir", data)

    def refused(version, *extra, code=34):
        r = erpctl("release", "remove", version, *extra, "--data-dir", data)
        assert r.returncode == code, r.stderr
        assert {x["version"] for x in ok_json("release", "list", "--data-dir", data)["releases"]} == \
            {"1.0.0", tree_version}
        return r.stderr

    assert "is the current release" in refused("1.0.0") and "erpctl release current" in refused("1.0.0")
    assert "is not installed" in refused("9.9.9", code=36)

    running = upgrade_state.new(from_version="1.0.0", to_version=tree_version, stage="backfill")
    upgrade_state.save(data, running)
    assert f"upgrade {running.id} (1.0.0 -> {tree_version}) is in progress" in refused(tree_version, "--force")
    # finished, the other way round: a rollback of it would switch back to the tree release
    upgrade_state.archive(data, dataclasses.replace(running, status="done", from_version=tree_version,
                                                    to_version="1.0.0"))
    says = refused(tree_version)
    assert "came from it" in says and "--force" in says

    serving = data / "releases" / SERVING_FILE
    serving.write_text(json.dumps({"state": "serving", "version": tree_version, "pid": os.getpid()}))
    assert "still serves it" in refused(tree_version, "--force")
    serving.unlink()

    r = ok("release", "remove", tree_version, "--force", "--data-dir", data)
    assert f"removed release {tree_version}" in r.stdout and "can no longer switch back" in r.stdout
    assert [x["version"] for x in ok_json("release", "list", "--data-dir", data)["releases"]] == ["1.0.0"]
    assert [name for name in leftovers(config.Target(data, None)) if name not in ("1.0.0", "current")] == []
    records = [json.loads(line) for line in (data / "evidence.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "release_remove" and records[-1]["data"]["version"] == tree_version
    assert "came from it" in records[-1]["data"]["kept_for_rollback_but_forced"]
    assert ok_json("evidence", "verify", "--data-dir", data)["ok"]
