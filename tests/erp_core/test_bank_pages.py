"""The Bank details page: one finance user asks for a change, the same user cannot approve it, a second one
approves it; sales cannot reach it; the page is in Chinese for a Chinese user."""

from __future__ import annotations

from erp_core.services import auth
from tests.conftest import PASSWORD

from .test_web import WebUser, text_of


def test_four_eyes_through_the_pages(sqlite_erp):
    erp = sqlite_erp
    with erp.db.session() as s:
        auth.add_user(s, "finance2", PASSWORD, "finance", full_name="Second finance")
    erp.supplier("S1")
    first, second = WebUser(erp, "finance"), WebUser(erp, "finance2")
    page = text_of(first.act("/app/bank-details", {"partner_code": "s1", "bank_account": "SI56 7777 0001",
                                                   "note": "letterhead"}))
    assert "takes effect once another finance user approves it" in page and "SI56 7777 0001" in page
    assert "waiting for another finance user" in page
    change = erp.get("/bank-account-changes", role="finance")["items"][0]["id"]
    refused = text_of(first.act(f"/app/bank-details/{change}/approve"))
    assert "cannot approve or reject it (four-eyes)" in refused
    assert erp.get("/partners?kind=supplier", role="finance")["items"][0]["bank_account"] is None
    unknown = text_of(first.act("/app/bank-details", {"partner_code": "NOPE", "bank_account": "SI56 1"}))
    assert "There is no customer or supplier with code 'NOPE'." in unknown
    done = text_of(second.act(f"/app/bank-details/{change}/approve"))
    assert f"Change {change} approved" in done
    assert erp.get("/partners?kind=supplier", role="finance")["items"][0]["bank_account"] == "SI56 7777 0001"
    sales = WebUser(erp, "sales")
    assert sales.get("/app/bank-details").status_code == 403
    assert sales.post("/app/bank-details", {"partner_code": "S1", "bank_account": "SI56 6"}).status_code == 403
    with erp.db.session() as s:
        auth.add_user(s, "finance3", PASSWORD, "finance", full_name="Third finance")
    third = WebUser(erp, "finance3")
    zh = text_of(third.client.get("/app/bank-details?state=approved", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True))
    assert "银行账户" in zh and "已批准" in zh and "SI56 7777 0001" in zh
