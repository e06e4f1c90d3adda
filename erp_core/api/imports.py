"""E-commerce order import: a batch of marketplace orders, each accepted or rejected with a reason."""

from pydantic import ValidationError

from ..services import imports
from ..services.documents import load_warehouse
from . import schemas as S
from .framework import operation


def _validate(raw) -> tuple[dict | None, str | None]:
    try:
        order = S.ImportOrderIn.model_validate(raw)
        lines = [S.ImportLineIn.model_validate(l).model_dump() for l in order.lines]
    except ValidationError as exc:
        e = exc.errors()[0]
        return None, f"{'.'.join(str(p) for p in e['loc']) or 'order'}: {e['msg']}"
    return {**order.model_dump(), "lines": lines}, None


@operation("/imports/orders", "POST", summary="Import a batch of marketplace orders", tag="sales",
           perm="sales.write", body=S.ImportBatchIn, response=S.ImportBatchOut)
def import_orders(ctx):
    b = ctx.body
    load_warehouse(ctx.s, b.warehouse_id)
    results, seen = [], set()
    for raw in b.orders:
        order, problem = _validate(raw)
        ext = raw.get("external_id") if isinstance(raw, dict) and isinstance(raw.get("external_id"), str) else None
        if problem:
            results.append({"external_id": ext, "status": "rejected", "reason": problem})
        elif order["external_id"] in seen:
            results.append({"external_id": ext, "status": "rejected", "reason": "external_id repeated in this batch"})
        else:
            seen.add(order["external_id"])
            results.append(imports.import_order(ctx.s, b.channel, b.warehouse_id, order, b.confirm))
    count = lambda st: sum(1 for r in results if r["status"] == st)  # noqa: E731
    return {"channel": b.channel, "accepted": count("accepted"), "duplicates": count("duplicate"),
            "rejected": count("rejected"), "results": results}
