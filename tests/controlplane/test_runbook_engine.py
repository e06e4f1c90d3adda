"""erpctl runbook: the shipped runbooks parse and plan; a run walks the steps as runbooks/README.md says
(confirm blocks, findings, a failing Recover, manual steps), pauses and resumes, survives SIGKILL mid-step,
logs every step in the evidence log, and never shows a secret. Runbooks written here run `sh` blocks
that leave files behind, so what ran (and what did not) is visible on disk."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from controlplane.errors import EXIT_CODES
from controlplane.runbook.parse import parse_runbook, runbook_paths
from tests.controlplane.cli_helpers import env, erpctl, erpctl_path, free_ports, ok
from tests.controlplane.test_up import Up
from tests.monitors.helpers import RUNBOOKS

SECRET = "s3cr3t-token-value"
PASSPHRASE = "correct-horse-passphrase"

FRONT = """---
id: {id}
title: {title}
alerts: [{name}]
severity: ticket
owner: ops
---

# {title}

## 1. What it means

What the alert says, in words.
"""


def write_runbook(directory: Path, name: str, steps: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(FRONT.format(id=name.lower(), title=f"The {name} runbook", name=name) + steps)
    return path


def three_steps(confirm: str = "true", recover: str = "true", check: str = "true") -> str:
    """Steps 2-4 of a runbook: Confirm, Recover, Check recovery, each one sh block."""
    return "".join(f"\n## {n}. {title}\n\n```sh\n{code}\n```\n" for n, title, code in
                   ((2, "Confirm it", confirm), (3, "Recover: fix it", recover), (4, "Check recovery", check)))


# Confirm (a finding), Recover (confirm block), a manual Recover step, Check recovery: each leaves a file.
FULL = """
## 2. Confirm it is real

```sh
echo confirmed >> "$WORK/confirm"; echo "token ${ERP_TOKEN:-none} passphrase $ERPCTL_BACKUP_PASSPHRASE"; exit 3
```

```erpctl
erpctl runbook list
```

## 3. Recover: restart it

```sh confirm
echo recovered >> "$WORK/recover"
```

## 4. Recover: ask the supplier

Call them and wait for the parcel.

## 5. Check recovery

```sh
test -f "$WORK/recover" && echo checked >> "$WORK/check"
```
"""


@pytest.fixture
def book(tmp_path):
    """(run: erpctl runbook ... with the data dir, runbooks dir and WORK set; the work directory)."""
    books, data, work = tmp_path / "books", tmp_path / "data", tmp_path / "work"
    work.mkdir()
    write_runbook(books, "Full", FULL)

    def run(*args, **kw):
        kw.setdefault("LOGNAME", "oncall-test")
        kw.setdefault("ERPCTL_BACKUP_PASSPHRASE", PASSPHRASE)
        front = ("--json",) if args[0] == "--json" else ()  # --json before the group: erpctl --json runbook ...
        return erpctl(*front, "runbook", *args[len(front):], ERPCTL_DATA_DIR=str(data), ERPCTL_RUNBOOKS_DIR=str(books),
                      **kw)

    run.data, run.work, run.books = data, work, books
    return run


def events(r: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in r.stdout.splitlines()]


def evidence(data: Path, kind_prefix: str = "runbook.") -> list[dict]:
    path = data / "evidence.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"].startswith(kind_prefix)]


def files(work: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in work.iterdir()}


def history(run) -> list[dict]:
    return json.loads(ok("--json", "runbook", "history", ERPCTL_DATA_DIR=str(run.data)).stdout)["runs"]


# ------------------------------------------------------------------------- the shipped runbooks

def test_the_shipped_runbooks_are_listed_and_each_parses_and_plans(tmp_path):
    listed = json.loads(ok("--json", "runbook", "list").stdout)
    names = [r["name"] for r in listed["runbooks"]]
    assert names == [p.stem for p in runbook_paths(RUNBOOKS)] and "ErpDown" in names
    assert Path(listed["runbooks_dir"]).resolve() == RUNBOOKS.resolve()
    down = next(r for r in listed["runbooks"] if r["name"] == "ErpDown")
    assert down["severity"] == "page" and down["alerts"] == ["ErpDown"]
    from click.testing import CliRunner

    from controlplane.cli.main import cli
    from controlplane.cli.options import Options

    data = tmp_path / "data"
    runner = CliRunner()
    for name in names:  # in this process: 21 erpctl starts would take seconds
        r = runner.invoke(cli, ["--json", "runbook", "run", name, "--dry-run", "--yes"], obj=Options(),
                          env={"ERPCTL_DATA_DIR": str(data)}, standalone_mode=False)
        assert r.exit_code == 0 and r.return_value == 0, f"{name}: {r.output}\n{r.exception!r}"
        plan = [json.loads(line) for line in r.output.splitlines()]
        rb = parse_runbook(RUNBOOKS / f"{name}.md")
        assert [e["number"] for e in plan] == [s.number for s in rb.steps], name
        assert {e["event"] for e in plan} == {"plan"}
        for e, step in zip(plan, rb.steps):
            assert len(e["blocks"]) == len(step.executed), f"{name} step {step.number}"
            shown = json.dumps(e["blocks"])
            assert "${ERP_URL" not in shown, f"{name}: ERP_URL not substituted"
    assert not data.exists(), "a dry run wrote to the data directory"


def test_show_prints_the_steps_with_their_commands():
    r = ok("runbook", "show", "ErpDown")
    assert "4. Recover: restart the ERP" in r.stdout and "erpctl restart" in r.stdout
    by_id = json.loads(ok("--json", "runbook", "show", "erp-down").stdout)  # the id names it too
    assert by_id["name"] == "ErpDown" and by_id["steps"][3]["blocks"][0]["confirm"] is True


def test_the_wheel_ships_the_runbooks(tmp_path_factory):
    import zipfile

    from tests.controlplane.release_helpers import build_tree_wheel

    wheel = build_tree_wheel(tmp_path_factory.getbasetemp() / "tree-wheel")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("controlplane/runbook/shipped/")}
    assert {f"controlplane/runbook/shipped/{p.name}" for p in runbook_paths(RUNBOOKS)} <= shipped


# ------------------------------------------------------------------------------- what runs

def test_a_dry_run_runs_nothing_and_shows_the_commands_substituted(book):
    r = book("run", "Full", "--dry-run", "--yes", "--param", f"WORK={book.work}", "--param", f"ERP_TOKEN={SECRET}")
    assert r.returncode == 0, r.stderr
    assert files(book.work) == {} and not book.data.exists()
    assert f'echo recovered >> "{book.work}/recover"' in r.stdout  # $WORK substituted
    assert "(manual step" in r.stdout
    assert SECRET not in r.stdout and PASSPHRASE not in r.stdout


def test_without_a_terminal_or_yes_the_run_waits_before_a_confirm_block(book):
    r = book("--json", "run", "Full", "--param", f"WORK={book.work}")
    assert r.returncode == 61, r.stdout + r.stderr
    paused = events(r)[-1]
    assert paused["event"] == "paused" and paused["status"] == "waiting-confirmation" and paused["step"] == 3
    assert files(book.work) == {"confirm": 1}  # the Confirm step ran (its exit 3 a finding); nothing changed
    run_id = paused["run"]
    assert history(book)[0] | {"status": "waiting-confirmation", "step": 3} == history(book)[0]

    again = book("resume", run_id)  # still nobody to say yes
    assert again.returncode == 61 and files(book.work) == {"confirm": 1}

    r = book("--json", "resume", run_id, "--yes")
    assert r.returncode == 62, r.stdout + r.stderr  # then the manual step
    assert files(book.work) == {"confirm": 1, "recover": 1}
    assert events(r)[-1]["waiting"].startswith("manual step 4")

    r = book("--json", "resume", run_id, "--done")
    assert r.returncode == 0, r.stdout + r.stderr
    end = events(r)[-1]
    assert end["event"] == "end" and end["status"] == "recovered" and end["exit_code"] == 0
    assert [f["step"] for f in end["findings"]] == [2]  # the Confirm finding did not stop the run
    assert files(book.work) == {"confirm": 1, "recover": 1, "check": 1}
    assert history(book)[0]["status"] == "recovered"
    finished = book("resume", run_id, "--yes")
    assert finished.returncode == 66 and "has finished" in finished.stderr


def test_with_yes_the_run_goes_to_the_end_except_at_manual_steps(book):
    r = book("--json", "run", "Full", "--yes", "--param", f"WORK={book.work}")
    assert r.returncode == 62, r.stdout + r.stderr
    steps = [e for e in events(r) if e["event"] == "step"]
    assert [(s["step"], s["outcome"]) for s in steps] == [(1, "shown"), (2, "finding"), (3, "ok")]
    confirm_block = steps[1]["commands"][0]
    assert confirm_block["exit_code"] == 3 and confirm_block["lang"] == "sh"
    assert steps[1]["commands"][1]["command"] == "erpctl runbook list" and steps[1]["commands"][1]["exit_code"] == 0
    assert "Full" in steps[1]["commands"][1]["output"]  # this erpctl ran it, with the run's environment
    assert steps[2]["commands"][0]["confirmation"] == "--yes"
    r = book("--json", "resume", events(r)[0]["run"], "--done")
    assert r.returncode == 0 and files(book.work) == {"confirm": 1, "recover": 1, "check": 1}


def _read_until(fd: int, text: str, seen: bytearray, times: int = 1, timeout: float = 30) -> None:
    """Read the terminal into `seen` until `text` has shown `times` times."""
    import select

    deadline = time.monotonic() + timeout
    while seen.count(text.encode()) < times:
        assert time.monotonic() < deadline, f"no {text!r} in:\n{seen.decode(errors='replace')}"
        if select.select([fd], [], [], 0.2)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the terminal closed: the process ended
                break


def test_on_a_terminal_the_engineer_answers_the_confirmation_and_the_manual_step(book):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([erpctl_path(), "runbook", "run", "Full", "--param", f"WORK={book.work}"], stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True,
                            env=env(ERPCTL_DATA_DIR=str(book.data), ERPCTL_RUNBOOKS_DIR=str(book.books)))
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, "run this block? [y/N]", seen)
        assert files(book.work) == {"confirm": 1}
        os.write(master, b"y\n")
        _read_until(master, "type 'done' once it is done", seen)
        assert files(book.work) == {"confirm": 1, "recover": 1}
        os.write(master, b"not yet\n")
        _read_until(master, "type 'done' once it is done", seen, times=2)  # asked again
        os.write(master, b"done\n")
        assert proc.wait(timeout=30) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert files(book.work) == {"confirm": 1, "recover": 1, "check": 1}
    steps = [e["data"] for e in evidence(book.data) if e["kind"] == "runbook.step"]
    assert steps[2]["commands"][0]["confirmation"] == "typed yes" and steps[3]["confirmation"] == "typed done"


def test_a_failing_recover_stops_the_run_and_a_failing_check_is_not_recovered(book):
    write_runbook(book.books, "Broken", """
## 2. Confirm it

```sh
false
```

## 3. Recover: try

```erpctl confirm
erpctl runbook show NoSuchRunbook
erpctl runbook list
```

## 4. Check recovery

```sh
echo checked >> "$WORK/check"
```
""")
    r = book("run", "Broken", "--yes", "--param", f"WORK={book.work}")
    assert r.returncode == 60, r.stdout + r.stderr
    assert "exit 64: the fix did not work; the run stops here" in r.stdout
    assert "erpctl runbook list" not in r.stdout.split("exit 64")[1]  # the block's next line did not run
    assert files(book.work) == {}
    assert history(book)[0]["status"] == "failed"
    assert [e["outcome"] for e in evidence(book.data)] == ["ok", "shown", "finding", "failed", "failed"]

    write_runbook(book.books, "Unchecked", three_steps(check="exit 5"))
    r = book("--json", "run", "Unchecked")
    assert r.returncode == 63 and events(r)[-1]["status"] == "not-recovered"
    assert history(book)[0]["status"] == "not-recovered"


def test_a_run_killed_mid_step_resumes_at_that_step_with_its_parameters(book):
    write_runbook(book.books, "Slow", """
## 2. Confirm it

```sh
echo once >> "$WORK/confirm"
```

## 3. Recover: the long fix

```sh
echo started >> "$WORK/recover"
test -f "$WORK/go" || sleep 60
echo "fixed with $FIX" >> "$WORK/fixed"
```

## 4. Check recovery

```sh
grep -q "fixed with plan-b" "$WORK/fixed"
```
""")
    proc = subprocess.Popen([erpctl_path(), "runbook", "run", "Slow", "--param", f"WORK={book.work}",
                             "--param", "FIX=plan-b"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env=env(ERPCTL_DATA_DIR=str(book.data), ERPCTL_RUNBOOKS_DIR=str(book.books)))
    try:
        deadline = time.monotonic() + 30
        while not (book.work / "recover").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the engine and its block, as a power cut would
    finally:
        proc.wait(timeout=10)
        proc.stdout.close(), proc.stderr.close()
    (run,) = history(book)
    assert run["status"] == "interrupted" and run["step"] == 3

    (book.work / "go").touch()
    r = book("resume", run["id"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"run {run['id']} (Slow) was interrupted during step 3 (Recover: the long fix): running step 3 again " \
           "from its start" in r.stdout
    assert files(book.work) == {"confirm": 1, "recover": 2, "fixed": 1, "go": 0}
    assert history(book)[0]["status"] == "recovered"
    steps = [e["data"] for e in evidence(book.data) if e["kind"] == "runbook.step"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and steps[2]["interrupted"] is True


def test_a_run_killed_before_a_step_resumes_there(book):
    """Failpoint runbook.step.before, third pass (steps 1, 2, 3): killed before step 3 ran anything."""
    r = book("run", "Full", "--yes", "--param", f"WORK={book.work}", ERPCTL_FAILPOINTS="runbook.step.before=kill@3")
    assert r.returncode == -signal.SIGKILL
    (run,) = history(book)
    assert (run["status"], run["step"], files(book.work)) == ("interrupted", 3, {"confirm": 1})
    r = book("--json", "resume", run["id"])
    assert r.returncode == 62 and events(r)[0] | {"interrupted": True, "step": 3} == events(r)[0]
    assert files(book.work) == {"confirm": 1, "recover": 1}  # --yes of the run holds for its resumes


def test_a_background_process_holding_the_output_does_not_hang_the_run(book):
    write_runbook(book.books, "Background",
                  three_steps(confirm='sleep 60 & echo $! > "$WORK/pid"; echo left running'))
    t0 = time.monotonic()
    try:
        r = book("--json", "run", "Background", "--param", f"WORK={book.work}", timeout=30)
    finally:
        if (book.work / "pid").exists():
            os.kill(int((book.work / "pid").read_text()), signal.SIGKILL)
    assert r.returncode == 0 and time.monotonic() - t0 < 20, r.stdout + r.stderr
    assert [e for e in events(r) if e["event"] == "step"][1]["commands"][0]["output"] == "left running\n"


def test_every_step_is_in_the_evidence_log_and_it_verifies(book):
    r = book("--json", "run", "Full", "--yes", "--param", f"WORK={book.work}")
    run_id = events(r)[0]["run"]
    shown = {c["command"]: c for e in events(r) if e["event"] == "step" for c in e["commands"]}
    book("resume", run_id, "--done")
    records = evidence(book.data)
    assert [x["kind"] for x in records] == ["runbook.start"] + ["runbook.step"] * 3 + ["runbook.pause",
                                           "runbook.resume"] + ["runbook.step"] * 2 + ["runbook.end"]
    assert all(x["actor"] == "oncall-test" and x["data"]["run"] == run_id for x in records)
    step2 = records[2]["data"]
    assert step2["kind"] == "Confirm" and step2["started_at"] and step2["ended_at"]
    for c in step2["commands"]:
        assert c["output_sha256"] == hashlib.sha256(shown[c["command"]]["output"].encode()).hexdigest()
        assert "output" not in c
    assert records[3]["data"]["commands"][0]["confirmation"] == "--yes"
    assert records[6]["data"]["confirmation"] == "resume --done"
    assert records[-1]["data"]["status"] == "recovered" and records[-1]["outcome"] == "recovered"
    v = ok("--json", "evidence", "verify", "--data-dir", book.data)
    assert json.loads(v.stdout)["ok"] is True


def test_secrets_never_reach_output_or_the_evidence_log(book):
    r = book("run", "Full", "--yes", "--param", f"WORK={book.work}", "--param", f"ERP_TOKEN={SECRET}")
    assert r.returncode == 62
    j = book("--json", "resume", history(book)[0]["id"], "--done")
    assert "token *** passphrase ***" in r.stdout and "'ERP_TOKEN': '***'" in r.stdout
    h = ok("--json", "runbook", "history", ERPCTL_DATA_DIR=str(book.data))
    for text in (r.stdout, r.stderr, j.stdout, h.stdout, (book.data / "evidence.jsonl").read_text()):
        assert SECRET not in text and PASSPHRASE not in text
    assert oct(book.data.joinpath("runbook-runs").stat().st_mode & 0o777) == "0o700"


def test_bad_input_is_refused_with_its_exit_code(book):
    r = book("run", "NoSuch")
    assert r.returncode == 64 and "erpctl runbook list" in r.stderr
    r = book("run", "Full", "--param", "no equals sign")
    assert r.returncode == 2 and "NAME=VALUE" in r.stderr
    r = book("resume", "20260101T000000.000Z-abcdef")
    assert r.returncode == 66 and "erpctl runbook history" in r.stderr
    (book.books / "Bad.md").write_text("# no front matter\n")
    r = book("run", "Bad")
    assert r.returncode == 65 and "front matter" in r.stderr
    write_runbook(book.books, "Unquoted", FULL.replace("erpctl runbook list", "erpctl runbook show 'Full"))
    r = book("run", "Unquoted", "--dry-run")
    assert r.returncode == 65 and "not an erpctl command line (No closing quotation)" in r.stderr
    assert not book.data.joinpath("runbook-runs").exists() or not list(book.data.glob("runbook-runs/*.json"))
    for code in range(60, 67):
        assert code in EXIT_CODES


def test_blocks_get_the_urls_of_the_running_erpctl_up(book, tmp_path):
    erp_port, ops_port = free_ports(2)
    ok("erp", "migrate", "--data-dir", book.data)
    up = Up("up", "--data-dir", book.data, "--erp-port", erp_port, "--ops-port", ops_port, tmp_path=tmp_path)
    try:
        up.wait_ready(f"http://127.0.0.1:{erp_port}/readyz", timeout=60)
        write_runbook(book.books, "Urls", three_steps(
            confirm='echo "erp=$ERP_URL ops=$OPS_URL data=$ERPCTL_DATA_DIR"',
            check='curl -fsS -m 5 "$ERP_URL/readyz" && curl -fsS -m 5 -o /dev/null "$OPS_URL/metrics"'))
        r = book("--json", "run", "Urls", ERPCTL_ERP_PORT="1", ERPCTL_OPS_PORT="2")  # the recorded ports win
        assert r.returncode == 0, r.stdout + r.stderr
        out = [e for e in events(r) if e["event"] == "step"][1]["commands"][0]["output"]
        assert out.strip() == f"erp=http://127.0.0.1:{erp_port} ops=http://127.0.0.1:{ops_port} data={book.data}"
    finally:
        up.stop()
        up.close()
    # erpctl up has died: its recorded ports still (where `erpctl restart` starts it again); the alerting URLs
    # only where they are set (at their defaults `erpctl status` would take them for configured ones)
    write_runbook(book.books, "Urls", three_steps(
        confirm='echo "erp=$ERP_URL ops=$OPS_URL am=${ERPCTL_ALERTMANAGER_URL:-unset} '
                'prom=${ERPCTL_PROMETHEUS_URL:-unset}"'))
    r = book("--json", "run", "Urls", ERPCTL_ERP_PORT="1", ERPCTL_OPS_PORT="2",
             ERPCTL_ALERTMANAGER_URL="http://127.0.0.1:9")
    assert r.returncode == 0, r.stdout + r.stderr
    out = [e for e in events(r) if e["event"] == "step"][1]["commands"][0]["output"]
    assert out.strip() == (f"erp=http://127.0.0.1:{erp_port} ops=http://127.0.0.1:{ops_port} am=http://127.0.0.1:9 "
                           "prom=unset")


@pytest.mark.parametrize("text, shown", [
    ('"${ERP_URL:-http://127.0.0.1:8000}/x"', '"http://erp:1/x"'),
    ('"${OPS_URL:-http://127.0.0.1:8001}"', '"http://127.0.0.1:8001"'),  # unset: the default
    ('"${ERP_TOKEN:?log in first}" $ERP_TOKEN', '"***" ***'),
    ('"${MISSING:?log in first}" $MISSING ${port%%/*}', '"${MISSING:?log in first}" $MISSING ${port%%/*}'),
])
def test_a_dry_run_substitutes_as_the_shell_would(text, shown):
    from controlplane.runbook.environment import substitute

    assert substitute(text, {"ERP_URL": "http://erp:1", "ERP_TOKEN": SECRET}) == shown


def test_secrets_are_masked_by_name_and_inside_urls():
    from controlplane.runbook.environment import Redactor

    redact = Redactor({"ERP_TOKEN": SECRET, "ERPCTL_DATABASE_URL": "postgresql://erp:pg-pass-word@db/erp",
                       "AWS_SECRET_ACCESS_KEY": "abc", "PATH": "/usr/bin"})
    assert redact(f"{SECRET} postgresql://erp:pg-pass-word@db/erp /usr/bin abc") == \
        "*** postgresql://erp:***@db/erp /usr/bin abc"
    assert redact.params({"ERP_TOKEN": SECRET, "WORK": "/w"}) == {"ERP_TOKEN": "***", "WORK": "/w"}
