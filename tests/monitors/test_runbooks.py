"""runbooks/: every alert's runbook_url resolves to a runbook that answers it, every runbook has the
shape a runbook engine executes (runbooks/README.md), and every command in it exists."""

from __future__ import annotations

import re
import shlex
import subprocess

import click
import pytest

from .helpers import RUNBOOKS, SEVERITIES, alert_rules, parse_runbook, runbook_file, runbook_paths

# Commands the runbooks may name before they exist, each with the issue that builds it. A planned
# command is only checked for its path; once it lands it is parsed in full like every other one,
# and its entry can go. `status` and `erp ...` are not here: they must exist.
PLANNED: set[tuple[str, ...]] = set()
FRONT_MATTER_KEYS = {"id", "title", "alerts", "severity", "owner"}
OPTIONAL_KEYS = {"kind"}  # "procedure": a runbook no alert names (alerts: [])
EXECUTED = {"erpctl", "sh"}
FLAGS = {"confirm"}


def _all_runbooks():
    return [parse_runbook(p) for p in runbook_paths()]


def _erpctl_lines():
    """Every erpctl command: the lines of erpctl blocks, and the erpctl commands sh blocks start a line with
    (up to the first `|`, `||`, `&&` or `;`)."""
    for rb in _all_runbooks():
        for block in rb.blocks:
            if block.lang == "erpctl":
                for line in block.commands:
                    yield rb.path.name, line
            elif block.lang == "sh":
                for line in block.code.splitlines():
                    if re.match(r"\s*erpctl\s", line):
                        # a parameter the engineer supplies (`"${DISCARD_WRITES:?...}"`) stands for a number
                        command = re.sub(r'"?\$\{[^}]*\}"?|\$[A-Z_]+', "1", line.strip())
                        yield rb.path.name, re.split(r"\s(?:\|\|?|&&|;)\s", command)[0]


# ------------------------------------------------------------------------- alerts -> runbooks

def test_every_runbook_url_resolves_to_a_runbook_answering_the_alert():
    for rule in alert_rules():
        name = rule["alert"]
        path = runbook_file(rule["annotations"]["runbook_url"])
        assert path is not None, f"{name}: runbook_url is not of the form <base>/<Name>.md"
        assert path.is_file(), f"{name}: {path.relative_to(RUNBOOKS.parent)} does not exist"
        rb = parse_runbook(path)
        assert name in rb.meta["alerts"], f"{path.name} does not list {name} in its alerts"
        assert rb.meta["severity"] == rule["labels"]["severity"], f"{path.name}: severity"
        assert rb.meta["owner"] == rule["labels"]["team"], f"{path.name}: owner"


def test_every_runbook_answers_an_alert_or_is_a_procedure():
    alerts = {r["alert"] for r in alert_rules()}
    for rb in _all_runbooks():
        if rb.meta.get("kind") == "procedure":
            assert rb.meta["alerts"] == [], f"{rb.path.name}: a procedure names no alert"
            assert rb.path.stem not in alerts, f"{rb.path.name}: an alert of that name needs its own runbook"
            continue
        assert rb.meta["alerts"] and set(rb.meta["alerts"]) <= alerts, f"{rb.path.name}: {rb.meta['alerts']}"
        assert rb.path.stem in rb.meta["alerts"], f"{rb.path.name}: its own alert is not among its alerts"


def test_the_procedures_are_there():
    """The runbooks no alert names: a restore, a failed upgrade, a damaged database, a lost field key, a full
    disk, and a whole site rebuilt on a new machine."""
    procedures = {rb.path.stem for rb in _all_runbooks() if rb.meta.get("kind") == "procedure"}
    assert {"RestoreFromBackup", "UpgradeFailed", "DatabaseCorrupted", "FieldKeyLost", "DiskFull",
            "SiteRecovery"} <= procedures, procedures


def test_the_parser_refuses_a_procedure_with_alerts_and_an_alert_runbook_without():
    from pathlib import Path

    from controlplane.errors import RunbookInvalid
    from controlplane.runbook.parse import check_runnable, parse_text

    body = "# T\n\n## 1. What it means\n\nx\n\n## 2. Check recovery\n\n```erpctl\nerpctl status\n```\n"
    for meta in ("kind: procedure\nalerts: [ErpDown]", "alerts: []", "kind: drill\nalerts: []"):
        rb = parse_text(f"---\nid: t\ntitle: T\n{meta}\nseverity: page\nowner: ops\n---\n{body}", Path("T.md"))
        with pytest.raises(RunbookInvalid):
            check_runnable(rb)
    ok = parse_text(f"---\nid: t\ntitle: T\nkind: procedure\nalerts: []\nseverity: page\nowner: ops\n---\n{body}",
                    Path("T.md"))
    check_runnable(ok)
    assert ok.kind == "procedure"


# ---------------------------------------------------------------------------------- the shape

def test_front_matter():
    ids = set()
    for rb in _all_runbooks():
        m = rb.meta
        assert FRONT_MATTER_KEYS <= set(m) <= FRONT_MATTER_KEYS | OPTIONAL_KEYS, \
            f"{rb.path.name}: front matter keys {sorted(m)}"
        assert m.get("kind", "alert") in ("alert", "procedure"), f"{rb.path.name}: kind {m.get('kind')!r}"
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", m["id"]), f"{rb.path.name}: id {m['id']!r}"
        assert m["id"] not in ids, f"{rb.path.name}: id {m['id']!r} repeats"
        ids.add(m["id"])
        assert m["severity"] in SEVERITIES and m["owner"], rb.path.name
        assert isinstance(m["alerts"], list), rb.path.name
        assert rb.title == m["title"], f"{rb.path.name}: the # heading differs from the title"


def test_steps_are_numbered_and_go_meaning_confirm_recover_check():
    for rb in _all_runbooks():
        name = rb.path.name
        steps = rb.steps
        assert [s.number for s in steps] == list(range(1, len(steps) + 1)), f"{name}: step numbers"
        kinds = [s.kind for s in steps]
        assert "" not in kinds, f"{name}: a step title starts with none of the kinds: {[s.title for s in steps]}"
        assert kinds[0] == "What it means" and kinds.count("What it means") == 1, name
        assert kinds[-1] == "Check recovery" and kinds.count("Check recovery") == 1, name
        assert "Confirm" in kinds and "Recover" in kinds, name
        assert kinds.index("Confirm") < kinds.index("Recover"), f"{name}: recover before confirming"
        assert not steps[0].blocks, f"{name}: 'What it means' runs nothing"
        for s in steps[1:]:
            executed = [b for b in s.blocks if b.lang in EXECUTED]
            if s.kind in ("Confirm", "Check recovery"):
                assert executed, f"{name}: step {s.number} ({s.title}) has no command block"
            for b in s.blocks:
                assert set(b.flags) <= FLAGS, f"{name}: step {s.number}: fence flags {b.flags}"
                assert b.code.strip(), f"{name}: step {s.number}: an empty block"


def test_sh_blocks_are_valid_posix_shell_without_systemctl():
    for rb in _all_runbooks():
        for b in rb.blocks:
            if b.lang != "sh":
                continue
            r = subprocess.run(["sh", "-n"], input=b.code, capture_output=True, text=True, check=False)
            assert r.returncode == 0, f"{rb.path.name}: sh -n: {r.stderr}\n{b.code}"
            assert "systemctl" not in b.code, f"{rb.path.name}: systemctl in a block"
            assert not re.search(r"\b(pkill|killall)\b", b.code), f"{rb.path.name}: kill processes by pid"
            assert not ("pgrep" in b.code and re.search(r"\bkill\b", b.code)), \
                f"{rb.path.name}: signals processes found by name (other installations): erpctl stop/restart"
            assert not re.search(r"^\s*(nohup\s+)?erpctl\s+up\b", b.code, re.MULTILINE), \
                f"{rb.path.name}: starts erpctl up without its ports and database: erpctl restart"


def test_blocks_that_change_things_ask_first():
    changing = re.compile(r"^\s*erpctl (erp maintenance (on|off)|backup (restore(?!.*--dry-run)|create)"
                          r"|upgrade (resume|rollback)|erp migrate|erp repair (?!.*--dry-run)|stop|restart(?!.*--dry-run))\b",
                          re.MULTILINE)
    for rb in _all_runbooks():
        for b in rb.blocks:
            if b.lang == "erpctl" and any(changing.match(c) for c in b.commands):
                assert "confirm" in b.flags, f"{rb.path.name}: {b.commands} changes things: ```erpctl confirm"
            if b.lang == "sh" and re.search(r"\bkill\b|^\s*(nohup\s+)?erpctl\s+up\b", b.code, re.MULTILINE):
                assert "confirm" in b.flags, f"{rb.path.name}: a block that (re)starts processes: ```sh confirm"
            if b.lang == "sh" and changing.search(b.code):
                assert "confirm" in b.flags, f"{rb.path.name}: a block that changes things: ```sh confirm"


# --------------------------------------------------------------------------- the commands exist

def _planned(path: list[str], rest: list[str]) -> bool:
    words = [w for w in rest if not w.startswith("-")]
    return any(tuple(path + words[:len(p) - len(path)]) == p for p in PLANNED if len(p) > len(path))


def check_command(argv: list[str]) -> str | None:
    """Parse `erpctl ARGV` with the real click tree as erpctl would, without running it: None when
    it parses (or names a planned command), else why not."""
    from controlplane.cli.main import cli
    from controlplane.cli.options import Options

    path: list[str] = []
    cmd, name, args, parent = cli, "erpctl", list(argv), None
    try:
        while True:
            ctx = cmd.make_context(name, args, parent=parent, obj=Options())
            if not isinstance(cmd, click.Group):
                return None
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                return f"'erpctl {' '.join(path)}' needs a command"
            sub = cmd.get_command(ctx, rest[0])
            if sub is None:
                if _planned(path, rest):
                    return None
                return f"no command 'erpctl {' '.join(path + [rest[0]])}'"
            path.append(rest[0])
            cmd, name, args, parent = sub, rest[0], rest[1:], ctx
    except click.exceptions.Exit:
        return None
    except click.ClickException as exc:
        return f"'erpctl {' '.join(argv)}': {exc.format_message()}"


def test_erpctl_lines_name_real_commands():
    problems = []
    seen = set()
    for name, line in _erpctl_lines():
        argv = shlex.split(line)
        if argv[0] != "erpctl":
            problems.append(f"{name}: {line!r} does not start with 'erpctl'")
            continue
        seen.add(tuple(w for w in argv[1:3] if not w.startswith("-")))
        why = check_command(argv[1:])
        if why:
            problems.append(f"{name}: {why}")
    assert not problems, "\n".join(problems)
    assert ("status",) in seen or any(s[:1] == ("status",) for s in seen)


def test_status_and_erp_commands_exist():
    """Not planned: the runbooks lean on them everywhere."""
    for argv in (["status"], ["erp", "check"], ["erp", "maintenance", "status"], ["erp", "maintenance", "on"],
                 ["erp", "migrate"]):
        assert _planned([], argv) is False
        assert check_command(argv) is None, check_command(argv)


@pytest.mark.parametrize("argv, ok", [
    (["erp", "check", "--json"], True),
    (["erp", "maintenance", "on", "--reason", "x"], True),
    (["erp", "maintenance", "sideways"], False),
    (["erp", "check", "--no-such-option"], False),
    (["erp", "frobnicate"], False),
    (["upgrade", "rollback"], True),  # planned
    (["upgrade", "explode"], False),
])
def test_the_command_check_itself(argv, ok):
    assert (check_command(argv) is None) is ok, check_command(argv)


@pytest.mark.parametrize("name", ["ErpDown.md", "ControlPlaneDown.md", "ProbeNotRunning.md"])
def test_restart_steps_restart_this_installation_only(name):
    """The recover step restarts with erpctl restart (this installation's erpctl up, its recorded ports and
    database, waiting for /readyz), after asking."""
    rb = next(r for r in _all_runbooks() if r.path.name == name)
    (recover,) = [s for s in rb.steps if s.kind == "Recover"]
    restarts = [b for b in recover.blocks if b.lang == "erpctl" and "erpctl restart" in b.commands]
    assert restarts and all("confirm" in b.flags for b in restarts), f"{name}: {recover.title}"
    assert not [b for b in rb.blocks if b.lang == "sh" and re.search(r"\b(kill|sleep)\b", b.code)], name


def test_invariant_violations_never_leaves_maintenance_on_for_finance():
    """The ERP refuses every change in maintenance mode: a recover block that switches it on switches it
    off again, so the books step (finance posting reversals) runs with the ERP writable; the stock cache is
    rebuilt in between, with a command that exists."""
    rb = next(r for r in _all_runbooks() if r.path.name == "InvariantViolations.md")
    rebuilt = False
    for step in (s for s in rb.steps if s.kind == "Recover"):
        for b in (b for b in step.blocks if b.lang == "erpctl"):
            on = False
            for line in b.commands:
                on = {"erpctl erp maintenance on": True, "erpctl erp maintenance off": False}.get(
                    " ".join(shlex.split(line)[:4]), on)
                if line.startswith("erpctl erp repair stock-cache"):
                    assert on and "--yes" in line, f"step {step.number}: the rebuild runs in maintenance, unasked"
                    rebuilt = True
            assert not on, f"step {step.number} leaves the ERP in maintenance mode"
    assert rebuilt
