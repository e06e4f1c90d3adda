"""erpctl erp seed: add a year of realistic demo data."""

from __future__ import annotations

import click

from .. import erp_admin
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    created = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in r["created"].items())
    return f"seeded scale {r['scale']} in {r['seconds']} s: {created}"


@click.command()
@click.option("--scale", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="1 = 20 customers, 5 suppliers, 50 products, ~150 sales orders; N multiplies them.")
@click.option("--rng-seed", type=int, default=1, show_default=True, help="Random seed (same seed, same data).")
@target_options
@json_option
def seed(scale, rng_seed, data_dir, database_url):
    """Add demo data: partners, products, price lists, reorder rules and a year of orders,
    invoices, payments, transfers and a stocktake, all through the ERP's services."""
    result = erp_admin.seed(target(data_dir, database_url), scale, rng_seed)
    emit(result, render(result))
