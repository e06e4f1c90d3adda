"""erpctl erp seed: add a year of realistic demo data."""

from __future__ import annotations

import contextlib
import json
import sys
import time

import click

from .. import erp_admin
from .options import emit, json_option, state, target, target_options

PHASES = {"year": "simulated days", "copy": "rows copied"}


def render(r: dict) -> str:
    created = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in r["created"].items())
    return f"seeded scale {r['scale']} in {r['seconds']} s: {created}"


@contextlib.contextmanager
def seed_progress(as_json: bool, stream=None, every: float = 1.0):
    """A rich progress bar on a terminal; otherwise (or with --json) one JSON object a line,
    {"phase", "done", "total"}, at most every `every` seconds per phase and at each phase's end."""
    stream = stream or sys.stderr
    if not as_json and stream.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=Console(file=stream))
        tasks: dict[str, int] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        with bar:
            yield update
        return
    last: dict[str, float] = {}

    def line(phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if done != total and now - last.get(phase, 0.0) < every:
            return
        last[phase] = now
        stream.write(json.dumps({"phase": phase, "done": done, "total": total}) + "\n")
        stream.flush()

    yield line


@click.command()
@click.option("--scale", type=click.IntRange(1, 2000), default=1, show_default=True,
              help="1 = 20 customers, 5 suppliers, 50 products, ~150 sales orders (~0.5 MB on SQLite); "
                   "N multiplies them (~1310 gives ~600 MB on SQLite).")
@click.option("--rng-seed", type=int, default=1, show_default=True, help="Random seed (same seed, same data).")
@target_options
@json_option
def seed(scale, rng_seed, data_dir, database_url):
    """Add demo data: partners, products, price lists, reorder rules and a year of orders,
    invoices, payments, transfers and a stocktake, all through the ERP's services.

    One year of scale 1 is made through the services; larger scales add copies of it with their own
    partners, products and documents (new codes and numbers, same dates), checked by the invariants
    as any data. Progress goes to stderr: a bar on a terminal, else JSON lines."""
    with seed_progress(state().json) as progress:
        result = erp_admin.seed(target(data_dir, database_url), scale, rng_seed, progress=progress)
    emit(result, render(result))
