"""The pages in Simplified Chinese and English: every text of the templates and the web code is in the
Chinese catalogue (and its compiled .mo is the .po's), the language follows the user's preference, the
login page's choice and the browser; the Chinese pages keep no English word of the catalogue; numbers,
money and dates follow the locale."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from sqlalchemy import select

from erp_core.models import User
from erp_core.web import i18n
from tests.erp_core.test_web import CSRF_RE, WebUser, text_of

ROOT = Path(__file__).resolve().parents[2]
LC = ROOT / "erp_core" / "translations" / "zh_Hans" / "LC_MESSAGES"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
# words that stay as they are in Chinese business text
KEPT = {"erp", "utc", "cny", "usd", "sku", "https", "yyyy", "vat"}
USERNAMES = {"admin", "sales", "purchasing", "warehouse", "finance", "auditor"}  # data: who entered an order


def extracted() -> set:
    """What pybabel extracts with babel.cfg: the msgids the pages and the web code use."""
    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    ids = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(str(ROOT), method_map, options_map,
                                                                  keywords=KEYWORDS):
        ids.add(message if isinstance(message, str) else tuple(message))
    return ids


def catalogue():
    with open(LC / "messages.po", "rb") as f:
        return read_po(f, locale="zh_Hans")


def _key(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def english_words() -> set:
    words = set()
    for m in catalogue():
        for text in (m.id if isinstance(m.id, tuple) else (m.id,)):
            text = re.sub(r"%\(\w+\)s|&\w+;", " ", text)
            words |= {w.lower() for w in re.findall(r"[A-Za-z]{3,}", text)}
    return words - KEPT


def test_every_text_of_the_pages_has_a_chinese_translation():
    cat = catalogue()
    in_po = {m.id for m in cat if m.id}
    missing = extracted() - in_po
    assert not missing, f"not in messages.po (run the update in docs/translations.md): {sorted(missing)}"
    untranslated = [m.id for m in cat if m.id and (not m.string or not all(m.string) if isinstance(m.string, tuple)
                                                    else not m.string)]
    assert not untranslated, f"no Chinese translation: {untranslated}"
    assert not [m.id for m in cat if m.id and m.fuzzy], "fuzzy translations are not used: review them"
    problems = [(m.id, errs) for m, errs in cat.check()]
    assert not problems, f"placeholders differ between English and Chinese: {problems}"
    with open(LC / "messages.mo", "rb") as f:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(f) if m.id}
    assert compiled == {_key(m.id): _key(m.string) for m in cat if m.id}, \
        "messages.mo is not compiled from messages.po: pybabel compile -d erp_core/translations"


def test_the_catalogue_loads_for_the_chinese_locale():
    t = Translations.load(str(i18n.TRANSLATIONS), ["zh_Hans"])
    assert t.gettext("Trial balance") == "试算平衡表" and t.gettext("Accounts receivable") == "应收账款"
    assert t.ngettext("%(num)s day", "%(num)s days", 30) % {"num": 30} == "30 天"


def chinese_data(erp):
    """A warehouse, a customer, a supplier and a product named in Chinese; 20 of the product in stock."""
    wh = erp.post("/warehouses", {"code": "SH01", "name": "上海一号仓"})["id"]
    cust = erp.post("/partners", {"code": "KH001", "name": "华东贸易有限公司", "is_customer": True})["id"]
    sup = erp.post("/partners", {"code": "GYS01", "name": "苏州五金制品厂", "is_supplier": True})["id"]
    prod = erp.post("/products", {"sku": "LS-M8", "name": "不锈钢螺栓", "sale_price": "1234.50",
                                  "tax_code": "VAT13"})["id"]
    erp.stock_in(sup, wh, [(prod, 20, "800.00")])
    return wh, cust, prod


def test_a_user_reads_the_pages_in_chinese_without_english_left(sqlite_erp):
    erp = sqlite_erp
    wh, cust, prod = chinese_data(erp)
    admin = WebUser(erp, "admin")
    assert '<html lang="en">' in admin.page("/app/")
    r = admin.post("/app/account/language", {"locale": "zh_Hans", "next": "/app/"})
    assert r.status_code == 303 and r.headers["Location"] == "/app/"
    with erp.db.session(write=False) as s:
        assert s.scalar(select(User.locale).where(User.username == "admin")) == "zh_Hans"
    dash = admin.page("/app/")
    assert '<html lang="zh-CN">' in dash and "<h1>工作台</h1>" in dash and "语言设置已保存。" in text_of(dash)

    form = {"partner_id": str(cust), "warehouse_id": str(wh), "line_count": "1", "do": "save",
            "lines-0-product_id": str(prod), "lines-0-quantity": "2"}
    page = admin.act("/app/sales/new", form)
    # 2 x 1,234.50 = 2,469.00 + 13 % VAT 320.97 = 2,789.97
    assert "销售订单 SO000001 已保存：不含税金额 2,469.00，税额 320.97，价税合计 2,789.97。" in text_of(page)
    order_id = int(re.search(r"/app/sales/(\d+)/confirm", page).group(1))
    for action in ("confirm", "deliver", "invoice"):
        page = admin.act(f"/app/sales/{order_id}/{action}", {"warehouse_id": str(wh)})
    assert "已开票" in text_of(page) and "13%" in text_of(page)
    inv_id = int(re.search(r"/app/invoices/(\d+)", page).group(1))
    invoice = text_of(admin.page(f"/app/invoices/{inv_id}"))
    assert "¥2,789.97" in invoice and "年" in invoice and "月" in invoice  # CNY as ¥, the date in Chinese

    paths = ["/app/", "/app/sales", "/app/sales/new", f"/app/sales/{order_id}", "/app/purchases",
             "/app/purchases/new", "/app/purchases/1", "/app/stock", f"/app/stock/products/{prod}",
             "/app/partners", "/app/invoices", f"/app/invoices/{inv_id}", "/app/reports/trial-balance",
             "/app/reports/profit-and-loss", "/app/reports/balance-sheet", "/app/account", "/app/products",
             "/app/products/new", f"/app/products/{prod}/edit", "/app/partners/new", f"/app/partners/{cust}/edit",
             f"/app/partners/{cust}/prices", "/app/reports/general-ledger?account=1122", "/app/reports/aging",
             "/app/reports/aging?kind=supplier", f"/app/invoices/{inv_id}/print"]
    english = english_words() - USERNAMES
    left = {}
    for path in paths:
        page = re.sub(r'<a [^>]*id="my-account".*?</a>', " ", admin.page(path), flags=re.S)
        words = {w.lower() for w in re.findall(r"[A-Za-z]{3,}", text_of(page))} & english
        if words:
            left[path] = sorted(words)
    for path, status in (("/app/nowhere", 404), ("/app/sales/424242", 404)):
        page = admin.page(path, status=status)
        assert "返回工作台" in page
        left.update({path: sorted(w) for w in [{x.lower() for x in re.findall(r"[A-Za-z]{3,}", text_of(page))}
                                                & english - {"app", "nowhere"}] if w})
    assert not left, f"English words left on the Chinese pages: {left}"
    balance = text_of(admin.page("/app/reports/trial-balance"))
    assert "试算平衡表" in balance and "应收账款" in balance and "主营业务收入" in balance


def test_the_login_page_follows_the_browser_and_the_choice_and_then_the_user(sqlite_erp):
    erp = sqlite_erp
    client = erp.app.test_client()
    zh = client.get("/app/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).get_data(as_text=True)
    assert '<html lang="zh-CN">' in zh and "登录 ERP 系统" in zh
    en = client.get("/app/login", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)
    assert '<html lang="en">' in en and "Log in to the ERP" in en
    assert "Log in to the ERP" in client.get("/app/login").get_data(as_text=True)  # nothing asked: English
    picked = client.get("/app/login?lang=zh_Hans", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "登录 ERP 系统" in picked
    token = CSRF_RE.search(picked).group(1)
    r = client.post("/app/login", data={"username": "sales", "password": "wrong", "csrf_token": token},
                    headers={"Accept-Language": "en"})
    assert r.status_code in (401, 422) and "登录 ERP 系统" in r.get_data(as_text=True)

    # a user's stored preference wins over the browser
    user = WebUser(erp, "finance")
    user.post("/app/account/language", {"locale": "zh_Hans"})
    assert "<h1>工作台</h1>" in user.client.get("/app/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    user.post("/app/account/language", {"locale": ""})  # back to the browser's language
    assert "<h1>Dashboard</h1>" in user.client.get("/app/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    r = user.post("/app/account/language", {"locale": "<script>"})
    assert r.status_code == 303
    assert "is not a language of this ERP" in text_of(user.page(r.headers["Location"]))


def test_numbers_money_and_dates_follow_the_locale(sqlite_erp):
    import datetime as dt
    from decimal import Decimal

    with sqlite_erp.app.test_request_context("/app/login", headers={"Accept-Language": "zh-CN"}):
        assert i18n.current() == "zh_Hans" and i18n.html_lang() == "zh-CN"
        assert i18n.currency(Decimal("71915.5")) == "¥71,915.50"
        assert i18n.money("1234567.891") == "1,234,567.89" and i18n.qty("2.500") == "2.5"
        assert i18n.pct(Decimal("13.00")) == "13%"
        assert i18n.date(dt.date(2026, 12, 5)) == "2026年12月5日"
    with sqlite_erp.app.test_request_context("/app/login", headers={"Accept-Language": "en-US"}):
        assert i18n.currency(Decimal("71915.5")) == "CN¥71,915.50"
        assert i18n.pct(Decimal("13.00")) == "13 %" and i18n.date(dt.date(2026, 12, 5)) == "Dec 5, 2026"
