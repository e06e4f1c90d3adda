"""The printed documents as PDF files (WeasyPrint): the invoice with the fields a Chinese VAT invoice
shows, the quotation and the delivery slip of a sales order, in English and in Chinese, read back
with poppler's pdftotext (the CJK font is embedded); who may not see a document gets 403 or 404."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from erp_core.services import masterdata
from tests.conftest import need
from tests.erp_core.test_web import WebUser

SELLER = {"company_name": "杭州示例贸易有限公司", "company_tax_id": "91330100MA2B000001",
          "company_address": "杭州市西湖区文三路 1 号 0571-88880000",
          "company_bank_account": "中国工商银行杭州分行 1202 0000 0000 0001"}


def pdf_text(data: bytes, tmp_path) -> str:
    if shutil.which("pdftotext") is None:
        need("pdftotext is not installed (apt-get install poppler-utils)")
    assert data.startswith(b"%PDF-")
    src = tmp_path / "doc.pdf"
    src.write_bytes(data)
    out = subprocess.run(["pdftotext", "-layout", str(src), "-"], capture_output=True, check=True, text=True).stdout
    text = "\n".join(" ".join(line.split()) for line in out.splitlines())  # a table row is one line
    return text.replace(" %", "%")  # '13 %' in English, '13%' in Chinese: pdftotext spaces them unevenly


def fonts_of(data: bytes, tmp_path) -> str:
    src = tmp_path / "fonts.pdf"
    src.write_bytes(data)
    return subprocess.run(["pdffonts", str(src)], capture_output=True, check=True, text=True).stdout


@pytest.fixture
def shop(sqlite_erp):
    """3 x 龙井茶 at the customer's 90.00 less 10 % = 243.00 + 13 % 31.59; 5 x Teacup 20.00 = 100.00 + 9 % 9.00:
    net 343.00, tax 40.59, total 383.59; delivered and invoiced."""
    erp = sqlite_erp
    for key, value in SELLER.items():
        setattr(erp.app.config["ERP_SETTINGS"], key, value)
    wh, sup = erp.warehouse(), erp.supplier()
    with erp.db.session(write=True) as s:
        cust = masterdata.create_partner(s, {
            "code": "HZ1", "name": "杭州茶馆有限公司", "is_customer": True, "tax_id": "91330106MA2C000002",
            "address": "杭州市上城区河坊街 8 号", "phone": "0571-87000000",
            "bank_account": "Bank and account 招商银行杭州分行 5719 0000 0002"}, initial_bank_account=True).id
    tea = erp.post("/products", {"sku": "TEA-1", "name": "龙井茶", "sale_price": "100.00", "tax_code": "VAT13",
                                 "unit": "kg"})["id"]
    cup = erp.product("CUP", "20.00", "VAT9")
    erp.stock_in(sup, wh, [(tea, 10, "50.00"), (cup, 10, "8.00")])
    erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": tea, "unit_price": "90.00"}, expect=200)
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "notes": "请于周五前送达", "lines": [
        {"product_id": tea, "quantity": "3", "discount_percent": "10"}, {"product_id": cup, "quantity": "5"}]},
        role="sales")
    assert so["gross_total"] == "383.59"
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", role="warehouse", json={}, expect=200)
    inv = erp.post(f"/sales-orders/{so['id']}/invoice", role="finance")
    return erp, so, inv


def test_the_invoice_pdf_shows_the_vat_invoice_fields_in_both_languages(shop, tmp_path):
    erp, so, inv = shop
    finance = WebUser(erp, "finance")
    r = finance.get(f"/app/invoices/{inv['id']}.pdf")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/pdf"
    assert f'filename="{inv["number"]}.pdf"' in r.headers["Content-Disposition"]
    text = pdf_text(r.data, tmp_path)
    for expected in ("Invoice", f"Invoice number: {inv['number']}", f"Order: {so['number']}", "Buyer",
                     "Seller",
                     "杭州茶馆有限公司 (HZ1)", "91330106MA2C000002", "Address and phone 杭州市上城区河坊街 8 号, 0571-87000000",
                     "Bank and account 招商银行杭州分行 5719 0000 0002", f"Name {SELLER['company_name']}",
                     f"Taxpayer id {SELLER['company_tax_id']}",
                     f"Bank and account {SELLER['company_bank_account']}", "龙井茶 TEA-1 kg 3 90.00 10% 243.00 13% 31.59",
                     "Product CUP CUP pcs 5 20.00 100.00 9% 9.00", "Total (CNY) 343.00 40.59",
                     "Total including tax (in figures) CN¥383.59",
                     "Total including tax (in words): CNY three hundred eighty-three and 59/100",
                     f"Date of issue: {inv['issue_date']}", "Remarks: 请于周五前送达"):
        assert expected in text, (expected, text)
    assert "WenQuanYi" in fonts_of(r.data, tmp_path) or "CJK" in fonts_of(r.data, tmp_path)

    finance.post("/app/account/language", {"locale": "zh_Hans"})
    text = pdf_text(finance.get(f"/app/invoices/{inv['id']}.pdf").data, tmp_path)
    for expected in ("发票", "购买方", "销售方", "纳税人识别号", "开户行及账号", "91330106MA2C000002",
                     "龙井茶 TEA-1 kg 3 90.00 10% 243.00 13% 31.59", "合计 (CNY) 343.00 40.59",
                     "价税合计（小写） ¥383.59", "价税合计（大写）: 叁佰捌拾叁元伍角玖分", f"发票号码: {inv['number']}",
                     f"开票日期: {inv['issue_date']}"):
        assert expected in text, (expected, text)


def test_the_quotation_and_delivery_slip_pdfs(shop, tmp_path):
    erp, so, _inv = shop
    sales = WebUser(erp, "sales")
    text = pdf_text(sales.get(f"/app/sales/{so['id']}/quotation.pdf").data, tmp_path)
    for expected in ("Quotation", f"Number: {so['number']}", "Customer", "杭州茶馆有限公司 (HZ1)",
                     "龙井茶 TEA-1 kg 3 90.00 10% 243.00 13% 31.59", "CN¥383.59",
                     "CNY three hundred eighty-three and 59/100", "this quotation is not an invoice"):
        assert expected in text, (expected, text)
    warehouse = WebUser(erp, "warehouse")
    warehouse.post("/app/account/language", {"locale": "zh_Hans"})
    r = warehouse.get(f"/app/sales/{so['id']}/slip.pdf")
    assert r.status_code == 200
    text = pdf_text(r.data, tmp_path)
    for expected in ("送货单", so["number"], "杭州茶馆有限公司 (HZ1)", "杭州市上城区河坊街 8 号", "WH1",
                     "1 TEA-1 龙井茶 kg 3", "2 CUP Product CUP", "收货人"):
        assert expected in text, (expected, text)
    assert "90.00" not in text and "383.59" not in text  # a delivery slip shows no prices
    sales.post("/app/account/language", {"locale": "zh_Hans"})
    text = pdf_text(sales.get(f"/app/sales/{so['id']}/quotation.pdf").data, tmp_path)
    assert "报价单" in text and "叁佰捌拾叁元伍角玖分" in text and "¥383.59" in text


def test_who_may_not_see_a_document_does_not_get_it(shop, tmp_path):
    erp, so, inv = shop
    assert WebUser(erp, "sales").get(f"/app/invoices/{inv['id']}.pdf").status_code == 403
    assert WebUser(erp, "purchasing").get(f"/app/sales/{so['id']}/quotation.pdf").status_code == 403
    assert WebUser(erp, "purchasing").get(f"/app/sales/{so['id']}/slip.pdf").status_code == 403
    finance = WebUser(erp, "finance")
    assert finance.get("/app/invoices/999.pdf").status_code == 404
    assert finance.get("/app/sales/999/quotation.pdf").status_code == 404
    assert WebUser(erp, None).get(f"/app/invoices/{inv['id']}.pdf").status_code == 302  # to the login page
    draft = erp.post("/sales-orders", {"partner_id": so["partner_id"], "warehouse_id": so["warehouse_id"],
                                       "lines": [{"product_id": so["lines"][0]["product_id"], "quantity": "1"}]},
                     role="sales")
    r = WebUser(erp, "sales").get(f"/app/sales/{draft['id']}/slip.pdf")
    assert r.status_code == 409 and "Confirm the order first." in r.get_data(as_text=True)


def test_the_order_and_invoice_pages_link_their_pdfs(shop):
    erp, so, inv = shop
    page = WebUser(erp, "finance").page(f"/app/sales/{so['id']}")
    for href in (f"/app/sales/{so['id']}/quotation.pdf", f"/app/sales/{so['id']}/slip.pdf",
                 f"/app/invoices/{inv['id']}.pdf"):
        assert f'href="{href}"' in page, href
    assert f"/app/invoices/{inv['id']}.pdf" not in WebUser(erp, "sales").page(f"/app/sales/{so['id']}")
    assert f'href="/app/invoices/{inv["id"]}.pdf"' in WebUser(erp, "finance").page(f"/app/invoices/{inv['id']}")
