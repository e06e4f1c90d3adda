"""Every runbook, run end to end on a real installation on both backends: the condition it answers is
caused for real where that is cheap and safe (tests/runbooks/conditions.py), then the product's runbook
engine runs it as an operator's automation would (`erpctl runbook run NAME --yes --json`, every step in
order, confirm blocks confirmed, manual steps done by the test as people would, then `erpctl runbook
resume RUN_ID --done`): every Recover command and every Check recovery command must exit 0, the run must
end `recovered` (exit 0) and its evidence records must be in the installation's evidence log.

One installation per backend is shared by the runbooks (`erpctl status` must exit 0 before each one).
The two backends' installations are independent, so a runbook runs on both at once: each backend's
cases run one after the other on a thread of their own, and each test waits for its own case."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.monitors.helpers import runbook_paths

from .conditions import condition
from .harness import RunResult, run_runbook
from .live import Live

BACKEND_NAMES = ("sqlite", "postgresql")
# BackupMissing first: it runs on the shared installation while that has never been backed up.
NAMES = sorted((p.stem for p in runbook_paths()), key=lambda n: (not condition(n).never_backed_up, n))
# Interleaved (a runbook on SQLite, then on PostgreSQL) so both backends work at the same time.
CASES = [pytest.param(b, n, marks=[pytest.mark.postgres] if b == "postgresql" else [], id=f"{b}-{n}")
         for n in NAMES for b in BACKEND_NAMES]


class Shared:
    """The installation the runbooks of one backend share: new (a repository, no backup) for the first
    runbook, then with a backup. One a runbook left unhealthy (its own test has failed for it) is replaced
    by a new one, so the next runbook is not blamed."""

    def __init__(self, root: Path, backend: str, resources: dict):
        self.root, self.backend, self.count, self.resources = root, backend, 0, resources
        self.live = self._new()
        self.backed_up = False
        self.known_healthy = True

    def _new(self) -> Live:
        self.count += 1
        live = Live(self.root / f"installation-{self.count}", self.backend)
        try:
            live.start()
            live.prepare()
        except BaseException:
            live.close()
            raise
        return live

    def healthy(self) -> Live:
        """The shared installation with a backup, `erpctl status` exiting 0."""
        if not self.backed_up:
            self.live.ok("backup", "create")
            self.backed_up, self.known_healthy = True, False
        if not self.known_healthy and self.live.healthy():
            self.live.close()
            self.live = self._new()
            self.live.ok("backup", "create")
        self.known_healthy = False
        return self.live

    def installation(self, name: str, root: Path) -> tuple[Live, bool]:
        """The installation `name` runs on and whether it is a new one of its own (closed afterwards): the
        shared one, healthy; for a runbook whose condition is an installation never backed up, the shared
        one while that holds, else a new one; for a runbook whose condition builds its own, that one."""
        cond = condition(name)
        if cond.installation is not None:
            return cond.installation(root, self.backend, self.resources), True
        if not cond.never_backed_up:
            return self.healthy(), False
        if not self.backed_up:
            self.backed_up = True  # the runbook's recovery takes the first backup
            return self.live, False
        own = Live(root, self.backend)
        try:
            own.start()
            own.prepare()
        except BaseException:
            own.close()
            raise
        return own, True

    def close(self) -> None:
        self.live.close()


class Matrix:
    """Each backend's cases, in the order submitted, on a thread of their own; its Shared created there."""

    def __init__(self, root: Path):
        self.root = root
        self.shared: dict[str, Shared] = {}
        self.threads = {b: ThreadPoolExecutor(1, thread_name_prefix=f"runbooks-{b}") for b in BACKEND_NAMES}
        self.cases: dict[tuple[str, str], Future] = {}
        self.resources: dict = {}  # session fixtures conditions need (Condition.resources), resolved by the tests

    def submit(self, backend: str, name: str) -> Future:
        key = (backend, name)
        if key not in self.cases:
            self.cases[key] = self.threads[backend].submit(self._run, backend, name)
        return self.cases[key]

    def _run(self, backend: str, name: str) -> RunResult:
        if backend not in self.shared:
            self.shared[backend] = Shared(self.root / backend, backend, self.resources)
        return run_case(self.shared[backend], name, self.root / backend / name)

    def close(self) -> None:
        for t in self.threads.values():
            t.shutdown(wait=True, cancel_futures=True)
        for s in self.shared.values():
            s.close()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    m = Matrix(tmp_path_factory.mktemp("runbooks"))
    yield m
    m.close()


def _assert_recovered(run: RunResult) -> None:
    assert run.stopped_at is None, f"a Recover command failed, the run stopped:\n{run.report()}"
    assert all(c.exit_code == 0 for c in run.ran("Recover")), run.report()
    (check,) = run.of_kind("Check recovery")
    assert check.commands and not check.failed, f"Check recovery is not green:\n{run.report()}"
    assert (run.status, run.exit_code) == ("recovered", 0), run.report()


def _assert_evidence(run: RunResult, live: Live) -> None:
    """The evidence log has the run: its start, each step, a pause per manual step, its end (recovered)."""
    records = run.evidence(live.data_dir)
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "runbook.start" and kinds[-1] == "runbook.end", kinds
    assert kinds.count("runbook.step") == len(run.steps), kinds
    assert kinds.count("runbook.pause") == kinds.count("runbook.resume") == sum(s.manual for s in run.steps), kinds
    assert records[-1]["outcome"] == "recovered" and records[-1]["data"]["exit_code"] == 0, records[-1]
    assert live.erpctl("evidence", "verify").returncode == 0


def run_case(shared: Shared, name: str, root: Path) -> RunResult:
    """Cause the condition, run the runbook, check it recovered and left the installation healthy."""
    cond = condition(name)
    t0 = time.monotonic()
    live, own = shared.installation(name, root)
    pipe = None
    try:
        if cond.pipeline:
            pipe = start_pipeline(live, root)
        if cond.cause is not None:
            cond.cause(live)
        manual_done = []

        def on_manual(step):
            manual_done.append(step.number)
            if cond.manual is not None:
                cond.manual(live, step)

        run = run_runbook(name, live.runbook_env(), on_manual=on_manual,
                          params=cond.params(live) if cond.params else None)
        _assert_recovered(run)
        _assert_evidence(run, live)
        assert [s.number for s in run.steps] == list(range(1, len(run.steps) + 1))
        assert manual_done == [s.number for s in run.steps if s.manual]
        if cond.after is not None:
            cond.after(live)
        (check,) = run.of_kind("Check recovery")
        if not any(c.command == "erpctl status" for c in check.commands):  # else it has just said so
            assert live.healthy() == {}, f"{name} left the installation unhealthy:\n{run.report()}"
        if live is shared.live:
            shared.known_healthy = True
        print(f"\n{name} on {shared.backend}: {time.monotonic() - t0:.1f} s (installation, condition, run, checks)")
        return run
    finally:
        if pipe is not None:
            live.pipeline, live.extra_env = None, {}
            pipe.stop()
        if own:
            live.close()


def start_pipeline(live: Live, root: Path):
    """Real Prometheus and Alertmanager (the shipped rules and routes) watching the installation."""
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE
    from tests.monitors.alerting import start_pipeline as start

    root.mkdir(parents=True, exist_ok=True)
    pipe = start(root, {"erp": f"127.0.0.1:{live.erp_port}", "erpctl": f"127.0.0.1:{live.ops_port}"},
                 live.ops_port, live.data_dir / WEBHOOK_TOKEN_FILE)
    live.pipeline = pipe
    live.extra_env = {"ERPCTL_PROMETHEUS_URL": pipe.prom_url, "ERPCTL_ALERTMANAGER_URL": pipe.am_url}
    return pipe


def _selected(request) -> set[tuple[str, str]]:
    return {(i.callspec.params["backend"], i.callspec.params["name"]) for i in request.session.items
            if i.originalname == request.node.originalname and hasattr(i, "callspec")}


@pytest.mark.parametrize("backend, name", CASES)
def test_runbook_recovers_its_condition(backend, name, matrix, request):
    others = [b for b in BACKEND_NAMES if b != backend and (b, name) in _selected(request)]
    for fixture in condition(name).resources:  # the PostgreSQL template only for a PostgreSQL case
        if fixture not in matrix.resources and ("pg_" not in fixture or "postgresql" in (backend, *others)):
            matrix.resources[fixture] = request.getfixturevalue(fixture)
    case = matrix.submit(backend, name)
    for other in others:  # the same runbook on the other backend, at the same time
        matrix.submit(other, name)
    run = case.result()
    print(f"\n{run.report()}")


def test_the_matrix_covers_every_runbook():
    assert len(NAMES) >= 20 and {"ErpDown", "BackupMissing", "Watchdog"} <= set(NAMES), NAMES
    assert NAMES[0] == "BackupMissing"
