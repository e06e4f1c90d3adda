"""Progress for long backup work: a rich progress bar on a terminal, nothing otherwise.

    with terminal_progress(enabled=not json) as progress:   # progress is None when not a terminal
        repo.create_backup(target, progress=progress)

A progress callable takes (phase, done, total); see repository.Progress.
"""

from __future__ import annotations

import contextlib
import sys

LABELS = {"capture": "snapshot", "store": "store", "index": "index", "check": "check chunks",
          "materialize": "rebuild", "prune": "prune"}
BYTES = {"store", "check", "materialize"}


@contextlib.contextmanager
def terminal_progress(enabled: bool = True, stream=None):
    stream = stream or sys.stderr
    if not enabled or not stream.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    bar = Progress(TextColumn("{task.description:<13}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeElapsedColumn(), console=Console(file=stream), transient=False)
    tasks: dict[str, int] = {}

    def update(phase: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(LABELS.get(phase, phase), total=total)
        bar.update(tasks[phase], completed=done, total=total)

    with bar:
        yield update
