"""Partners (with per-customer prices), products, tax rates, warehouses."""

from sqlalchemy import select

from ..models import Partner, Product, TaxRate, Warehouse
from ..services import masterdata
from ..services.common import get_or_404
from . import schemas as S
from .framework import operation, paginate


def _partner_out(ctx):
    see = ctx.may("partners.sensitive")
    return lambda p: masterdata.partner_view(p, see)


@operation("/partners", summary="List customers and suppliers", tag="partners", perm="partners.read",
           query=S.PartnerQuery, response=S.Page[S.PartnerOut])
def list_partners(ctx):
    q = ctx.query
    stmt = select(Partner).order_by(Partner.id)
    if q.kind:
        stmt = stmt.where(Partner.is_customer if q.kind == "customer" else Partner.is_supplier)
    if q.q:
        stmt = stmt.where(masterdata.matching(Partner, q.q))
    return paginate(ctx, stmt, _partner_out(ctx))


@operation("/partners", "POST", summary="Create a customer or supplier", tag="partners", perm="partners.write",
           body=S.PartnerIn, response=S.PartnerOut, status=201, location="/partners/{id}")
def create_partner(ctx):
    return _partner_out(ctx)(masterdata.create_partner(ctx.s, ctx.body.model_dump()))


@operation("/partners/<int:partner_id>", summary="Get a partner", tag="partners", perm="partners.read",
           response=S.PartnerOut)
def get_partner(ctx, partner_id):
    return _partner_out(ctx)(get_or_404(ctx.s, Partner, partner_id, "partner"))


@operation("/partners/<int:partner_id>", "PATCH", summary="Update a partner", tag="partners",
           perm="partners.write", body=S.PartnerPatch, response=S.PartnerOut)
def patch_partner(ctx, partner_id):
    p = masterdata.update_partner(ctx.s, partner_id, ctx.body.model_dump(exclude_unset=True))
    return _partner_out(ctx)(p)


@operation("/partners/<int:partner_id>/prices", summary="A customer's price list", tag="partners",
           perm="partners.read", response=S.Page[S.PriceOut])
def list_prices(ctx, partner_id):
    items = masterdata.customer_prices(ctx.s, partner_id)
    return {"items": items, "total": len(items), "limit": len(items), "offset": 0}


@operation("/partners/<int:partner_id>/prices", "PUT", summary="Set a price on a customer's price list",
           tag="partners", perm="sales.write", body=S.PriceIn, response=S.PriceOut)
def put_price(ctx, partner_id):
    b = ctx.body
    masterdata.set_customer_price(ctx.s, partner_id, b.product_id, b.unit_price, b.min_quantity)
    return next(i for i in masterdata.customer_prices(ctx.s, partner_id)
                if i["product_id"] == b.product_id and i["min_quantity"] == b.min_quantity)


@operation("/products", summary="List products", tag="products", perm="products.read",
           query=S.ProductQuery, response=S.Page[S.ProductOut])
def list_products(ctx):
    q = ctx.query
    stmt = select(Product).order_by(Product.id)
    if q.q:
        stmt = stmt.where(masterdata.matching(Product, q.q))
    if q.active is not None:
        stmt = stmt.where(Product.active.is_(q.active))
    return paginate(ctx, stmt)


@operation("/products", "POST", summary="Create a product", tag="products", perm="products.write",
           body=S.ProductIn, response=S.ProductOut, status=201, location="/products/{id}")
def create_product(ctx):
    return masterdata.create_product(ctx.s, ctx.body.model_dump())


@operation("/products/<int:product_id>", summary="Get a product", tag="products", perm="products.read",
           response=S.ProductOut)
def get_product(ctx, product_id):
    return get_or_404(ctx.s, Product, product_id, "product")


@operation("/products/<int:product_id>", "PATCH", summary="Update a product", tag="products",
           perm="products.write", body=S.ProductPatch, response=S.ProductOut)
def patch_product(ctx, product_id):
    return masterdata.update_product(ctx.s, product_id, ctx.body.model_dump(exclude_unset=True))


@operation("/tax-rates", summary="List tax rates", tag="products", perm="products.read",
           response=S.Page[S.TaxRateOut])
def list_tax_rates(ctx):
    rows = ctx.s.scalars(select(TaxRate).order_by(TaxRate.rate_percent.desc())).all()
    return {"items": rows, "total": len(rows), "limit": len(rows), "offset": 0}


@operation("/warehouses", summary="List warehouses", tag="stock", perm="stock.read", query=S.PageQuery,
           response=S.Page[S.WarehouseOut])
def list_warehouses(ctx):
    return paginate(ctx, select(Warehouse).order_by(Warehouse.id))


@operation("/warehouses", "POST", summary="Create a warehouse", tag="stock", perm="system.write",
           body=S.WarehouseIn, response=S.WarehouseOut, status=201, location="/warehouses/{id}")
def create_warehouse(ctx):
    return masterdata.create_warehouse(ctx.s, ctx.body.model_dump())


@operation("/warehouses/<int:warehouse_id>", summary="Get a warehouse", tag="stock", perm="stock.read",
           response=S.WarehouseOut)
def get_warehouse(ctx, warehouse_id):
    return get_or_404(ctx.s, Warehouse, warehouse_id, "warehouse")


@operation("/warehouses/<int:warehouse_id>", "PATCH", summary="Rename a warehouse or change its address",
           tag="stock", perm="system.write", body=S.WarehousePatch, response=S.WarehouseOut)
def patch_warehouse(ctx, warehouse_id):
    return masterdata.update_warehouse(ctx.s, warehouse_id, ctx.body.model_dump(exclude_unset=True))
