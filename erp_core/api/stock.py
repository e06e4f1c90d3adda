"""Stock levels, the move ledger, transfers, reorder rules, low stock, stocktakes."""

from sqlalchemy import func, select

from ..models import Product, ReorderRule, StockLevel, StockMove, Stocktake, Warehouse
from ..services import reports, stock, stocktakes
from ..services.common import full, get_or_404
from . import schemas as S
from .framework import operation, paginate


@operation("/stock", summary="On-hand stock by product and warehouse", tag="stock", perm="stock.read",
           query=S.StockQuery, response=S.Page[S.StockLevelOut])
def list_stock(ctx):
    q = ctx.query
    stmt = (select(StockLevel.product_id, Product.sku, StockLevel.warehouse_id,
                   Warehouse.code.label("warehouse_code"), StockLevel.quantity)
            .join(Product, Product.id == StockLevel.product_id)
            .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
            .order_by(Product.sku, Warehouse.code))
    if q.product_id:
        stmt = stmt.where(StockLevel.product_id == q.product_id)
    if q.warehouse_id:
        stmt = stmt.where(StockLevel.warehouse_id == q.warehouse_id)
    total = ctx.s.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = ctx.s.execute(stmt.limit(q.limit).offset(q.offset)).mappings().all()
    return {"items": [dict(r) for r in rows], "total": total, "limit": q.limit, "offset": q.offset}


@operation("/stock/moves", summary="The stock-move ledger", tag="stock", perm="stock.read",
           query=S.MoveQuery, response=S.Page[S.MoveOut])
def list_moves(ctx):
    q = ctx.query
    stmt = select(StockMove).options(*full(StockMove)).order_by(StockMove.id.desc())
    if q.product_id:
        stmt = stmt.where(StockMove.product_id == q.product_id)
    if q.warehouse_id:
        stmt = stmt.where((StockMove.from_warehouse_id == q.warehouse_id) | (StockMove.to_warehouse_id == q.warehouse_id))
    if q.kind:
        stmt = stmt.where(StockMove.kind == q.kind)
    return paginate(ctx, stmt)


@operation("/stock/transfers", "POST", summary="Transfer stock between warehouses", tag="stock",
           perm="stock.write", body=S.TransferIn, response=S.TransferOut, status=201)
def transfer(ctx):
    b = ctx.body
    moves = stock.transfer(ctx.s, b.product_id, b.quantity, b.from_warehouse_id, b.to_warehouse_id, b.reference)
    ctx.s.expire_all()  # the quantities as stored (and read back later): 4.000, not 4
    first = S.MoveOut.model_validate(moves[0], from_attributes=True).model_dump()
    return {**first, "quantity": sum(m.quantity for m in moves),
            "moves": [S.MoveOut.model_validate(m, from_attributes=True).model_dump() for m in moves]}


@operation("/stock/reorder-rules", summary="List reorder points", tag="stock", perm="stock.read",
           query=S.PageQuery, response=S.Page[S.ReorderRuleOut])
def list_rules(ctx):
    return paginate(ctx, select(ReorderRule).order_by(ReorderRule.id))


@operation("/stock/reorder-rules", "PUT", summary="Set a reorder point for a product in a warehouse",
           tag="stock", perm="stock.write", body=S.ReorderRuleIn, response=S.ReorderRuleOut)
def put_rule(ctx):
    b = ctx.body
    return stock.set_reorder_rule(ctx.s, b.product_id, b.warehouse_id, b.min_quantity, b.reorder_quantity)


@operation("/stock/low", summary="Products below their reorder point", tag="stock", perm="stock.read",
           query=S.PageQuery, response=S.Page[S.LowStockOut])
def low_stock(ctx):
    q = ctx.query
    rows = reports.low_stock(ctx.s)
    return {"items": rows[q.offset:q.offset + q.limit], "total": len(rows), "limit": q.limit, "offset": q.offset}


@operation("/stocktakes", summary="List stocktakes", tag="stock", perm="stock.read", query=S.PageQuery,
           response=S.Page[S.StocktakeOut])
def list_stocktakes(ctx):
    return paginate(ctx, select(Stocktake).order_by(Stocktake.id.desc()))


@operation("/stocktakes", "POST", summary="Record a stock count", tag="stock", perm="stock.write",
           body=S.StocktakeIn, response=S.StocktakeOut, status=201, location="/stocktakes/{id}")
def create_stocktake(ctx):
    return stocktakes.create(ctx.s, ctx.body.warehouse_id, [c.model_dump() for c in ctx.body.counts])


@operation("/stocktakes/<int:stocktake_id>", summary="Get a stocktake", tag="stock", perm="stock.read",
           response=S.StocktakeOut)
def get_stocktake(ctx, stocktake_id):
    return get_or_404(ctx.s, Stocktake, stocktake_id, "stocktake")


@operation("/stocktakes/<int:stocktake_id>/post", "POST", summary="Post a stocktake's differences",
           tag="stock", perm="stock.write", response=S.StocktakeOut)
def post_stocktake(ctx, stocktake_id):
    return stocktakes.post(ctx.s, stocktake_id)


@operation("/stocktakes/<int:stocktake_id>/cancel", "POST", summary="Cancel a draft stocktake",
           tag="stock", perm="stock.write", response=S.StocktakeOut)
def cancel_stocktake(ctx, stocktake_id):
    return stocktakes.cancel(ctx.s, stocktake_id)
