"""Reading /metrics in tests: parse with prometheus_client, check with the real promtool."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import need


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        need("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def promtool_check_metrics(text: str) -> None:
    """`promtool check metrics` must find nothing (exit 0, no output)."""
    r = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics:\n{r.stdout}{r.stderr}"


def families(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict, family: str, name: str | None = None, **labels) -> float:
    """The value of one sample; fails when it is not there. A counter's family is named without
    `_total` by the parser: "erp_http_requests_total" finds it either way."""
    name = name or family
    if family not in fams and family.endswith("_total"):
        family = family[: -len("_total")]
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name}{labels} in {fams[family].samples}")


def upgrade_in_progress(data_dir, stage: str, started: float, *, runner_alive: bool = True) -> None:
    """An upgrade state as `erpctl upgrade apply` leaves it at `stage` (started at unix `started`), worked on
    by this very process, or by one that is gone (a pid that cannot exist)."""
    import os

    from controlplane.upgrade import state as upgrade_state

    runner = upgrade_state.runner("apply")
    if not runner_alive:
        runner = {**runner, "pid": 2 ** 22 + 1}  # above pid_max: no such process
    st = upgrade_state.new(runner=runner, to_version="1.1.0")
    st.begin(stage).started_epoch = started
    upgrade_state.save(data_dir, st)
    assert os.path.exists(upgrade_state.state_path(data_dir))
