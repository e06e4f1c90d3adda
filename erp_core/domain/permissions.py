"""Roles and what each may do. Permissions are '<area>.<read|write>' strings, plus partners.sensitive (see
partners' tax ids, bank accounts, phones unmasked) and partners.bank (ask for and approve bank-account changes:
the finance role only, not even admin -- segregation of duties, services/bankdetails.py)."""

from __future__ import annotations

AREAS = ("partners", "products", "stock", "sales", "purchasing", "finance", "reports",
         "users", "audit", "system")

ROLES: dict[str, dict] = {
    "admin": {"description": "Administrator: everything",
              "perms": {f"{a}.{m}" for a in AREAS for m in ("read", "write")} | {"partners.sensitive"}},
    "sales": {"description": "Sales staff: customers, sales orders, stock look-up",
              "perms": {"partners.read", "partners.write", "products.read", "stock.read",
                        "sales.read", "sales.write", "reports.read"}},
    "purchasing": {"description": "Purchasing staff: suppliers, purchase orders",
                   "perms": {"partners.read", "partners.write", "products.read", "products.write",
                             "stock.read", "purchasing.read", "purchasing.write", "reports.read"}},
    "warehouse": {"description": "Warehouse staff: stock moves, transfers, stocktakes",
                  "perms": {"products.read", "stock.read", "stock.write", "sales.read",
                            "purchasing.read"}},
    "finance": {"description": "Finance staff: invoices, bills, payments, ledger, reports",
                "perms": {"partners.read", "partners.sensitive", "partners.bank", "products.read", "stock.read",
                          "sales.read", "purchasing.read",
                          "finance.read", "finance.write", "reports.read"}},
    "auditor": {"description": "Auditor: reads everything, changes nothing",
                "perms": {f"{a}.read" for a in AREAS} | {"partners.sensitive"}},
}


def has(role: str, perm: str) -> bool:
    return perm in ROLES.get(role, {}).get("perms", set())
