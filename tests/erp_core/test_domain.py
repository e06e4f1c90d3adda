"""Pure rules: rounding, pricing, moving-average costing, state machines, masking."""

from decimal import Decimal

import pytest

from erp_core import crypto
from erp_core.domain import costing, journal, pricing
from erp_core.domain.money import D, round_money
from erp_core.domain.states import PURCHASE_ORDER, SALES_ORDER


def test_one_rounding_rule_half_up_to_the_cent():
    assert round_money("2.675") == Decimal("2.68")
    assert round_money("-2.675") == Decimal("-2.68")
    assert round_money("0.004") == Decimal("0.00")
    with pytest.raises(TypeError):
        D(0.1)


def test_line_discount_then_tax_each_rounded_once():
    a = pricing.line_amounts(pricing.LineInput(Decimal("3"), Decimal("33.33"), Decimal("7.5"), Decimal("13")))
    assert (a.net, a.tax, a.gross) == (Decimal("92.49"), Decimal("12.02"), Decimal("104.51"))
    with pytest.raises(ValueError, match="discount_percent"):
        pricing.line_amounts(pricing.LineInput(Decimal("1"), Decimal("1"), Decimal("101")))


def test_moving_average_cost():
    assert costing.moving_average(Decimal("0"), Decimal("0"), Decimal("10"), Decimal("60")) == Decimal("60.0000")
    assert costing.moving_average(Decimal("10"), Decimal("60"), Decimal("10"), Decimal("70")) == Decimal("65.0000")
    assert costing.moving_average(Decimal("3"), Decimal("1"), Decimal("1"), Decimal("2")) == Decimal("1.2500")
    assert costing.cost_of(Decimal("3"), Decimal("1.3333")) == Decimal("4.00")


def test_state_machines_are_explicit():
    assert SALES_ORDER.states == ["draft", "confirmed", "delivered", "invoiced", "paid", "cancelled"]
    assert PURCHASE_ORDER.next_state("confirmed", "receive") == "received"
    with pytest.raises(ValueError, match="allowed from delivered: invoice"):
        SALES_ORDER.next_state("delivered", "cancel")
    with pytest.raises(ValueError, match="nothing"):
        SALES_ORDER.next_state("paid", "confirm")


def test_journal_lines_never_have_both_sides():
    with pytest.raises(journal.Unbalanced, match="both"):
        journal.check_balanced([journal.Line("1002", Decimal("1"), Decimal("1"))])
    assert journal.customer_invoice(1, Decimal("0"), Decimal("0")) == []


@pytest.fixture
def restore_key():
    yield
    from tests.conftest import FIELD_KEY
    crypto.configure(FIELD_KEY)


def test_field_encryption_round_trip_and_masking(restore_key):
    crypto.configure("a passphrase")
    sealed = crypto.encrypt("6222021234567890")
    assert sealed != crypto.encrypt("6222021234567890")  # fresh nonce each time
    assert crypto.decrypt(sealed) == "6222021234567890"
    crypto.configure("another key")
    with pytest.raises(Exception):
        crypto.decrypt(sealed)
    assert crypto.mask("6222021234567890") == "************7890"
    assert crypto.mask("12") == "****"
