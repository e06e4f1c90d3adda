"""Sales and purchase orders and their state transitions."""

from ..models import PurchaseOrder, SalesOrder
from ..services import purchasing, sales
from ..services.documents import as_patched, list_query
from . import schemas as S
from .framework import operation, paginate


# ---- sales ------------------------------------------------------------------------------------

@operation("/sales-orders", summary="List sales orders", tag="sales", perm="sales.read", query=S.OrderQuery,
           response=S.Page[S.SalesOrderOut])
def list_sales(ctx):
    return paginate(ctx, _listed(SalesOrder, ctx.query))


def _listed(model, q):
    return list_query(model, state=q.state, partner_id=q.partner_id, q=q.q, date_from=q.date_from,
                      date_to=q.date_to, sort=q.sort)


@operation("/sales-orders", "POST", summary="Create a sales order", tag="sales", perm="sales.write",
           body=S.OrderIn, response=S.SalesOrderOut, status=201, idempotent=True,
           location="/sales-orders/{id}")
def create_sale(ctx):
    return sales.create(ctx.s, ctx.body.model_dump())


@operation("/sales-orders/<int:order_id>", summary="Get a sales order", tag="sales", perm="sales.read",
           response=S.SalesOrderOut)
def get_sale(ctx, order_id):
    return sales.get(ctx.s, order_id)


@operation("/sales-orders/<int:order_id>", "PATCH", summary="Change a draft sales order", tag="sales",
           perm="sales.write", body=S.OrderPatch, response=S.SalesOrderOut)
def patch_sale(ctx, order_id):
    """409 when the order is past draft; lines, when sent, replace all lines (priced as on create)."""
    order = sales.get(ctx.s, order_id)
    return sales.update_draft(ctx.s, order_id, as_patched(order, ctx.body.model_dump(exclude_unset=True)))


@operation("/sales-orders/<int:order_id>/confirm", "POST", summary="Confirm a sales order", tag="sales",
           perm="sales.write", response=S.SalesOrderOut)
def confirm_sale(ctx, order_id):
    return sales.confirm(ctx.s, order_id)


@operation("/sales-orders/<int:order_id>/deliver", "POST", summary="Deliver a sales order from stock",
           tag="sales", perm="stock.write", body=S.DeliverIn, response=S.SalesOrderOut)
def deliver_sale(ctx, order_id):
    return sales.deliver(ctx.s, order_id, ctx.body.warehouse_id)


@operation("/sales-orders/<int:order_id>/invoice", "POST", summary="Invoice a delivered sales order",
           tag="sales", perm="finance.write", response=S.InvoiceOut, status=201, location="/invoices/{id}")
def invoice_sale(ctx, order_id):
    return sales.invoice(ctx.s, order_id)


@operation("/sales-orders/<int:order_id>/cancel", "POST", summary="Cancel a sales order", tag="sales",
           perm="sales.write", response=S.SalesOrderOut)
def cancel_sale(ctx, order_id):
    return sales.cancel(ctx.s, order_id)


# ---- purchasing -------------------------------------------------------------------------------

@operation("/purchase-orders", summary="List purchase orders", tag="purchasing", perm="purchasing.read",
           query=S.OrderQuery, response=S.Page[S.PurchaseOrderOut])
def list_purchases(ctx):
    return paginate(ctx, _listed(PurchaseOrder, ctx.query))


@operation("/purchase-orders", "POST", summary="Create a purchase order", tag="purchasing",
           perm="purchasing.write", body=S.OrderIn, response=S.PurchaseOrderOut, status=201, idempotent=True,
           location="/purchase-orders/{id}")
def create_purchase(ctx):
    return purchasing.create(ctx.s, ctx.body.model_dump())


@operation("/purchase-orders/<int:order_id>", summary="Get a purchase order", tag="purchasing",
           perm="purchasing.read", response=S.PurchaseOrderOut)
def get_purchase(ctx, order_id):
    return purchasing.get(ctx.s, order_id)


@operation("/purchase-orders/<int:order_id>", "PATCH", summary="Change a draft purchase order",
           tag="purchasing", perm="purchasing.write", body=S.OrderPatch, response=S.PurchaseOrderOut)
def patch_purchase(ctx, order_id):
    """409 when the order is past draft; lines, when sent, replace all lines."""
    order = purchasing.get(ctx.s, order_id)
    return purchasing.update_draft(ctx.s, order_id, as_patched(order, ctx.body.model_dump(exclude_unset=True)))


@operation("/purchase-orders/<int:order_id>/confirm", "POST", summary="Confirm a purchase order",
           tag="purchasing", perm="purchasing.write", response=S.PurchaseOrderOut)
def confirm_purchase(ctx, order_id):
    return purchasing.confirm(ctx.s, order_id)


@operation("/purchase-orders/<int:order_id>/receive", "POST", summary="Receive a purchase order into stock",
           tag="purchasing", perm="stock.write", response=S.PurchaseOrderOut)
def receive_purchase(ctx, order_id):
    return purchasing.receive(ctx.s, order_id)


@operation("/purchase-orders/<int:order_id>/bill", "POST", summary="Book the supplier's bill",
           tag="purchasing", perm="finance.write", body=S.BillIn, response=S.InvoiceOut, status=201,
           location="/invoices/{id}")
def bill_purchase(ctx, order_id):
    return purchasing.bill(ctx.s, order_id, ctx.body.supplier_reference)


@operation("/purchase-orders/<int:order_id>/cancel", "POST", summary="Cancel a purchase order",
           tag="purchasing", perm="purchasing.write", response=S.PurchaseOrderOut)
def cancel_purchase(ctx, order_id):
    return purchasing.cancel(ctx.s, order_id)
