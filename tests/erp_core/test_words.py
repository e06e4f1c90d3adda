"""Amounts in words (domain.words): the Chinese capital numerals a VAT invoice prints beside its
total, and the English cheque style."""

from __future__ import annotations

from decimal import Decimal

import pytest

from erp_core.domain.words import chinese_upper, english, in_words


@pytest.mark.parametrize("amount, words", [
    ("1234.56", "壹仟贰佰叁拾肆元伍角陆分"),
    ("100", "壹佰元整"),
    ("0", "零元整"),
    ("0.05", "伍分"),
    ("0.5", "伍角整"),
    ("10", "壹拾元整"),
    ("15.10", "壹拾伍元壹角整"),
    ("1230.05", "壹仟贰佰叁拾元零伍分"),
    ("1005", "壹仟零伍元整"),
    ("10000", "壹万元整"),
    ("100500", "壹拾万零伍佰元整"),
    ("105000", "壹拾万伍仟元整"),
    ("100000005", "壹亿零伍元整"),
    ("120000000", "壹亿贰仟万元整"),
    ("10005000", "壹仟万伍仟元整"),
    ("301.50", "叁佰零壹元伍角整"),
    ("459.39", "肆佰伍拾玖元叁角玖分"),
    ("999999999999.99", "玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),
    ("-12.30", "负壹拾贰元叁角整"),
    ("2.005", "贰元零壹分"),  # rounded to the cent first, half away from zero
])
def test_chinese_capital_numerals(amount, words):
    assert chinese_upper(Decimal(amount)) == words


@pytest.mark.parametrize("amount, words", [
    ("1234.56", "CNY one thousand two hundred thirty-four and 56/100"),
    ("0", "CNY zero and 00/100"),
    ("19.05", "CNY nineteen and 05/100"),
    ("1000000", "CNY one million and 00/100"),
    ("301.50", "CNY three hundred one and 50/100"),
    ("2000017.10", "CNY two million seventeen and 10/100"),
])
def test_english_words(amount, words):
    assert english(Decimal(amount)) == words


def test_the_language_picks_the_words():
    assert in_words(Decimal("1.20"), "zh_Hans") == "壹元贰角整"
    assert in_words(Decimal("1.20"), "en") == "CNY one and 20/100"
