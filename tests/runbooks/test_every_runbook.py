"""Every runbook, run end to end on a real installation on both backends: the condition it answers is
caused for real where that is cheap and safe (tests/runbooks/conditions.py), then the runbook runs
through the harness exactly as runbooks/README.md says an engine runs it (every step, in order,
confirm blocks confirmed, manual steps done by the test as people would), and every Recover command
and every Check recovery command must exit 0.

One installation per backend is shared by the runbooks (`erpctl status` must exit 0 before each one);
a runbook that needs what the shared one cannot have (no backup ever) gets its own."""

from __future__ import annotations

import pytest

from tests.monitors.helpers import runbook_paths

from .conditions import condition
from .harness import RunResult, run_runbook
from .live import PASSWORD, USER, Live

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
NAMES = [p.stem for p in runbook_paths()]
# Runbooks other work is rewriting: a failure that comes from their text is expected for now.
REWRITTEN = {"InvariantViolations", "DiskSpaceLow", "BackupTooOld", "BackupMissing", "RestoreTestOverdue",
             "UpgradeStuck"}
XFAIL: dict[str, str] = {}


class Shared:
    """The installation the runbooks of one backend share. One a runbook left unhealthy (its own test has
    failed for it) is replaced by a new one, so the next runbook is not blamed."""

    def __init__(self, root, backend: str):
        self.root, self.backend, self.count = root, backend, 0
        self.live = self._new()
        self.known_healthy = True

    def _new(self) -> Live:
        self.count += 1
        live = Live(self.root / f"installation-{self.count}", self.backend)
        try:
            live.start()
            live.baseline()
        except BaseException:
            live.close()
            raise
        return live

    def healthy(self) -> Live:
        if not self.known_healthy and self.live.healthy():
            self.live.close()
            self.live = self._new()
        self.known_healthy = False
        return self.live

    def close(self) -> None:
        self.live.close()


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request, tmp_path_factory):
    s = Shared(tmp_path_factory.mktemp(f"rb-{request.param}"), request.param)
    yield s
    s.close()


@pytest.fixture
def live(request, shared, tmp_path):
    """The installation the runbook runs on: the shared one, healthy; or one of its own."""
    cond = condition(request.node.callspec.params["name"])
    if not cond.own_installation:
        yield shared.healthy()
        return
    own = Live(tmp_path, shared.backend)
    try:
        own.start()
        own.ok("backup", "init", "--key-file", own.key_file)
        own.ok("erp", "user", "add", USER, "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
        own.token()
        yield own
    finally:
        own.close()


@pytest.fixture
def pipeline(request, live, tmp_path):
    if not condition(request.node.callspec.params["name"]).pipeline:
        yield None
        return
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE
    from tests.monitors.alerting import start_pipeline

    pipe = start_pipeline(tmp_path, {"erp": f"127.0.0.1:{live.erp_port}", "erpctl": f"127.0.0.1:{live.ops_port}"},
                          live.ops_port, live.data_dir / WEBHOOK_TOKEN_FILE)
    live.pipeline = pipe
    live.extra_env = {"ERPCTL_PROMETHEUS_URL": pipe.prom_url, "ERPCTL_ALERTMANAGER_URL": pipe.am_url}
    try:
        yield pipe
    finally:
        live.extra_env = {}
        pipe.stop()


def _assert_recovered(run: RunResult) -> None:
    assert run.stopped_at is None, f"a Recover command failed, the run stopped:\n{run.report()}"
    recover = [c for s in run.of_kind("Recover") for c in s.commands]
    assert all(c.exit_code == 0 for c in recover), run.report()
    (check,) = run.of_kind("Check recovery")
    assert check.commands and not check.failed, f"Check recovery is not green:\n{run.report()}"


@pytest.mark.parametrize("name", NAMES)
def test_runbook_recovers_its_condition(name, shared, live, pipeline):
    if name in XFAIL:
        pytest.xfail(XFAIL[name])
    cond = condition(name)
    if cond.cause is not None:
        cond.cause(live)
    manual_done = []

    def on_manual(step):
        manual_done.append(step.number)
        if cond.manual is not None:
            cond.manual(live, step)

    run = run_runbook(name, live.runbook_env(), on_manual=on_manual)
    print(f"\n{run.report()}")
    _assert_recovered(run)
    assert [s.number for s in run.steps] == list(range(1, len(run.steps) + 1))
    assert manual_done == [s.number for s in run.steps if s.manual]
    assert live.healthy() == {}, f"{name} left the installation unhealthy"
    if live is shared.live:
        shared.known_healthy = True


def test_the_matrix_covers_every_runbook():
    assert len(NAMES) >= 20 and "ErpDown" in NAMES, NAMES
