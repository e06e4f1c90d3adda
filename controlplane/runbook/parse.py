"""A runbook file as the engine reads it (runbooks/README.md): YAML front matter, a `# Title`, then
steps `## <n>. <Kind>...`, each with its prose and its fenced blocks (```erpctl, ```sh, optionally
`confirm`; any other info string is illustration)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import RunbookInvalid, RunbookNotFound

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
STEP = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
KINDS = ("What it means", "Confirm", "Recover", "Check recovery")
EXECUTED = ("erpctl", "sh")
# Front matter `kind`: an alert's runbook (the default: it answers the alerts it lists) or a procedure (no
# alert of its own: restore from a backup, recover a site; its `alerts` is empty).
RUNBOOK_KINDS = ("alert", "procedure")


@dataclass
class Block:
    lang: str
    flags: list[str]
    code: str

    @property
    def commands(self) -> list[str]:
        """erpctl blocks: one command a line (comments and blank lines skipped)."""
        return [ln.strip() for ln in self.code.splitlines() if ln.strip() and not ln.strip().startswith("#")]

    @property
    def executed(self) -> bool:
        return self.lang in EXECUTED

    @property
    def confirm(self) -> bool:
        return "confirm" in self.flags


@dataclass
class Step:
    number: int
    title: str
    body: str
    blocks: list[Block]

    @property
    def kind(self) -> str:
        for kind in KINDS:
            if self.title.startswith(kind):
                return kind
        return ""

    @property
    def executed(self) -> list[Block]:
        return [b for b in self.blocks if b.executed]

    @property
    def manual(self) -> bool:
        """A Recover step without a command block: work done by people, the engine waits for them."""
        return self.kind == "Recover" and not self.executed

    @property
    def prose(self) -> str:
        """The step's text without its blocks, blank lines collapsed."""
        text = FENCE.sub("", self.body)
        return re.sub(r"\n{3,}", "\n\n", text).strip()


@dataclass
class Runbook:
    path: Path
    meta: dict
    title: str
    steps: list[Step]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def blocks(self) -> list[Block]:
        return [b for s in self.steps for b in s.blocks]

    @property
    def kind(self) -> str:
        """"alert" (answers the alerts it lists) or "procedure" (no alert: run when people decide to)."""
        return str(self.meta.get("kind", "alert"))


def parse_text(text: str, path: Path) -> Runbook:
    m = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    if not m:
        raise RunbookInvalid(f"{path.name}: no YAML front matter between --- lines at the top",
                             fix="Start the file with the front matter of runbooks/README.md.")
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise RunbookInvalid(f"{path.name}: the front matter is not YAML: {exc}",
                             fix="Fix the front matter (runbooks/README.md).") from None
    if not isinstance(meta, dict):
        raise RunbookInvalid(f"{path.name}: the front matter is not a table of keys",
                             fix="Give id, title, alerts, severity and owner (runbooks/README.md).")
    body = text[m.end():]
    # Headings inside code blocks are not steps: blank the fences' contents before finding them.
    masked = FENCE.sub(lambda f: "```" + f.group(1) + "\n" + re.sub(r"[^\n]", " ", f.group(2)) + "```", body)
    title_m = re.search(r"^# (.+)$", masked, re.MULTILINE)
    heads = list(STEP.finditer(masked))
    steps = []
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(body)
        chunk = body[h.end():end]
        blocks = []
        for f in FENCE.finditer(chunk):
            words = f.group(1).split()
            blocks.append(Block(words[0] if words else "", words[1:], f.group(2)))
        steps.append(Step(int(h.group(1)), h.group(2).strip(), chunk, blocks))
    return Runbook(path, meta, title_m.group(1).strip() if title_m else "", steps)


def parse_runbook(path: Path) -> Runbook:
    return parse_text(Path(path).read_text(), Path(path))


def check_runnable(rb: Runbook) -> None:
    """What the engine needs to walk a runbook: steps numbered from 1, each of a known kind."""
    if not rb.steps:
        raise RunbookInvalid(f"{rb.path.name}: no steps ('## 1. What it means' ...)",
                             fix="Write the steps as runbooks/README.md says.")
    if rb.kind not in RUNBOOK_KINDS:
        raise RunbookInvalid(f"{rb.path.name}: kind {rb.kind!r} is neither of {', '.join(RUNBOOK_KINDS)}",
                             fix="Write 'kind: procedure' for a runbook no alert names, else leave kind out.")
    if (rb.kind == "procedure") == bool(rb.meta.get("alerts")):
        raise RunbookInvalid(f"{rb.path.name}: a {rb.kind} runbook with alerts {rb.meta.get('alerts')!r}",
                             fix="An alert's runbook lists its alerts; a procedure has 'alerts: []'.")
    numbers = [s.number for s in rb.steps]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RunbookInvalid(f"{rb.path.name}: steps are numbered {numbers}, not from 1 without gaps",
                             fix="Number the '## <n>.' headings 1, 2, 3...")
    for s in rb.steps:
        if not s.kind:
            raise RunbookInvalid(f"{rb.path.name}: step {s.number} ({s.title!r}) is of no known kind",
                                 fix=f"Start its title with one of: {', '.join(KINDS)}.")
        for line in (c for b in s.executed if b.lang == "erpctl" for c in b.commands):
            try:
                words = shlex.split(line)
            except ValueError as exc:
                words = [str(exc)]
            if words[0] != "erpctl":
                raise RunbookInvalid(f"{rb.path.name}: step {s.number}: {line!r} is not an erpctl command line "
                                     f"({words[0]})", fix="Write one whole 'erpctl ...' command a line, quotes closed.")


def runbook_paths(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.md") if p.name != "README.md")


def find(directory: Path, name: str) -> Runbook:
    """The runbook NAME in `directory`: its file name (ErpDown, ErpDown.md) or its front matter id."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunbookNotFound(f"the runbooks directory {directory} does not exist",
                              fix="Set --runbooks-dir (or ERPCTL_RUNBOOKS_DIR) to a directory of runbooks.")
    stem = name[:-3] if name.endswith(".md") else name
    path = directory / f"{stem}.md"
    if "/" not in stem and path.is_file() and path.name != "README.md":
        rb = parse_runbook(path)
    else:
        rb = next((r for r in map(parse_runbook, runbook_paths(directory)) if r.meta.get("id") == name), None)
    if rb is None:
        raise RunbookNotFound(f"no runbook {name!r} in {directory}",
                              fix="'erpctl runbook list' shows the runbooks (name or id).")
    check_runnable(rb)
    return rb
