"""The return of a delivered and invoiced sales order through the pages: the Return button, the form with
the returnable quantities, the posted return with its credit note, in English and Chinese."""

import re

from .test_web import WebUser, _shop, text_of
from .test_web_pdf import pdf_text


def test_return_form_posts_the_return_and_shows_the_credit_note(sqlite_erp, tmp_path):
    erp = sqlite_erp
    shop = _shop(erp)
    so = erp.post("/sales-orders", {"partner_id": shop["cust"], "warehouse_id": shop["wh"], "lines": [
        {"product_id": shop["a"], "quantity": "3", "discount_percent": "5"}, {"product_id": shop["b"], "quantity": "7"}]})
    for step in ("confirm", "deliver"):
        erp.post(f"/sales-orders/{so['id']}/{step}", expect=200)
    admin, warehouse = WebUser(erp, "admin"), WebUser(erp, "warehouse")
    assert 'id="return-goods"' not in admin.page(f"/app/sales/{so['id']}")  # not invoiced yet
    erp.post(f"/sales-orders/{so['id']}/invoice")
    page = admin.page(f"/app/sales/{so['id']}")
    assert f'href="/app/sales/{so["id"]}/return"' in page
    form = admin.page(f"/app/sales/{so['id']}/return")
    la, lb = (l["id"] for l in so["lines"])
    assert re.search(rf'id="left-{la}">3<', form) and re.search(rf'id="left-{lb}">7<', form)

    over = admin.post(f"/app/sales/{so['id']}/return", {f"qty-{la}": "4", "warehouse_id": shop["wh"]})
    assert over.status_code == 303 and over.headers["Location"].endswith(f"/app/sales/{so['id']}/return")
    assert "4.000 exceeds the 3.000 that may still be returned" in text_of(admin.page(over.headers["Location"]))

    page = admin.act(f"/app/sales/{so['id']}/return", {f"qty-{la}": "1", f"qty-{lb}": "", "reason": "broken",
                                                       "warehouse_id": shop["wh"]})
    text = text_of(page)
    # A: 1 x 100 - 5 % = 95.00 + VAT 13 % 12.35 = 107.35, applied to the unpaid invoice
    assert "Return RET000001 posted; note CN000001 issued: total 107.35." in text
    assert re.search(r'id="note-applied">107.35<', page) and re.search(r'id="note-unapplied">0.00<', page)
    form = admin.page(f"/app/sales/{so['id']}/return")
    assert re.search(rf'id="left-{la}">2<', form)
    invoice = admin.page(f"/app/invoices/{erp.get('/invoices', query={'kind': 'customer'})['items'][0]['id']}")
    assert re.search(r'id="invoice-outstanding">(\d+\.\d\d)<', invoice).group(1) == "352.04"  # 459.39 - 107.35

    # the warehouse may return but not issue notes: its return waits as a draft for finance
    page = warehouse.act(f"/app/sales/{so['id']}/return", {f"qty-{lb}": "2", "warehouse_id": shop["wh"]})
    assert "Return RET000002 saved as a draft" in text_of(page) and 'id="post-return"' not in page

    assert admin.post("/app/account/language", {"locale": "zh_Hans", "next": "/app/"}).status_code == 303
    page = text_of(admin.page("/app/returns/1"))
    assert "客户退货 RET000001" in page and "红字发票 CN000001" in page, page[:400]
    pdf = pdf_text(admin.get("/app/returns/1/note.pdf").data, tmp_path)
    assert "红字发票" in pdf and "CN000001" in pdf and "INV000001" in pdf and "107.35" in pdf, pdf[:600]
