"""Prometheus metrics of the ERP: requests by route template and status, latency, business gauges."""

from __future__ import annotations

import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class BusinessCollector:
    """Gauges read from the database at scrape time (a few cheap aggregate queries)."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        from .models import Invoice, ReorderRule, SalesOrder, StockLevel
        from .services import maintenance

        up = GaugeMetricFamily("erp_database_up", "1 if the ERP reached its database at scrape time")
        try:
            with self.db.session(write=False) as s:
                orders = s.execute(select(SalesOrder.state, func.count()).group_by(SalesOrder.state)).all()
                open_ar = s.scalar(select(func.coalesce(func.sum(Invoice.gross_total - Invoice.amount_paid), 0))
                                   .where(Invoice.kind == "customer", Invoice.state != "paid"))
                low = s.scalar(select(func.count()).select_from(ReorderRule).outerjoin(
                    StockLevel, (StockLevel.product_id == ReorderRule.product_id)
                    & (StockLevel.warehouse_id == ReorderRule.warehouse_id))
                    .where(func.coalesce(StockLevel.quantity, 0) < ReorderRule.min_quantity))
                maint = maintenance.state(s)["enabled"]
        except Exception:  # the scrape must still answer when the database is down
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        so = GaugeMetricFamily("erp_sales_orders", "Sales orders by state", labels=["state"])
        for state, n in orders:
            so.add_metric([state], n)
        yield so
        yield GaugeMetricFamily("erp_receivables_open_amount", "Open customer invoice amount (currency units)",
                                value=float(open_ar or 0))
        yield GaugeMetricFamily("erp_low_stock_products", "Reorder rules below their minimum", value=low or 0)
        yield GaugeMetricFamily("erp_maintenance_mode", "1 while the ERP is read-only", value=int(maint))


def instrument(app: Flask, db) -> CollectorRegistry:
    registry = CollectorRegistry()
    requests_total = Counter("erp_http_requests_total", "HTTP requests by method, route template and status",
                             ["method", "route", "status"], registry=registry)
    latency = Histogram("erp_http_request_duration_seconds", "HTTP request latency by route template",
                        ["method", "route"], buckets=BUCKETS, registry=registry)
    registry.register(BusinessCollector(db))

    @app.before_request
    def _start():
        g._t0 = time.perf_counter()

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD") else "OTHER"
        requests_total.labels(method, route, str(response.status_code)).inc()
        latency.labels(method, route).observe(time.perf_counter() - g.get("_t0", time.perf_counter()))
        return response

    return registry
