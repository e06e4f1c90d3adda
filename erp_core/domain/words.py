"""Amounts in words, as printed documents show a total beside its figures: Chinese capital numerals
(大写, the way a VAT invoice writes 价税合计) and English cheque style. Pure functions over Decimal."""

from __future__ import annotations

from .money import D, round_money

DIGITS = "零壹贰叁肆伍陆柒捌玖"
SMALL_UNITS = ("", "拾", "佰", "仟")
GROUP_UNITS = ("", "万", "亿", "万亿")


def _split(amount) -> tuple[str, int, int, int]:
    """(sign, whole yuan, jiao, fen) of an amount rounded to the cent."""
    cents = int(round_money(D(amount)) * 100)
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return sign, cents // 100, cents // 10 % 10, cents % 10


def _zh_whole(n: int) -> str:
    """12345 -> 壹万贰仟叁佰肆拾伍; one 零 for any run of zeros between figures, 万/亿 for each group."""
    if n >= 10 ** 16:
        raise ValueError("amount too large to write in words")
    s = str(n)
    out, zero = [], False
    for i, ch in enumerate(s):
        pos = len(s) - 1 - i
        d = int(ch)
        if d == 0:
            zero = True
        else:
            if zero:
                out.append("零")
                zero = False
            out.append(DIGITS[d] + SMALL_UNITS[pos % 4])
        if pos % 4 == 0 and pos and int(s[max(0, i - 3):i + 1]):
            out.append(GROUP_UNITS[pos // 4])
            zero = False  # the group's trailing zeros: 壹拾万伍仟, not 壹拾万零伍仟
    return "".join(out)


def chinese_upper(amount) -> str:
    """1234.56 -> 壹仟贰佰叁拾肆元伍角陆分; 100 -> 壹佰元整; 1230.05 -> 壹仟贰佰叁拾元零伍分;
    0.5 -> 伍角整; 0 -> 零元整; a negative amount starts with 负."""
    sign, yuan, jiao, fen = _split(amount)
    out = "负" if sign else ""
    if yuan:
        out += _zh_whole(yuan) + "元"
    if not (jiao or fen):
        return out + ("" if yuan else "零元") + "整"
    if jiao:
        out += DIGITS[jiao] + "角"
    elif yuan:
        out += "零"
    return out + (DIGITS[fen] + "分" if fen else "整")


_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))


def _en_whole(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + _en_whole(n % 100) if n % 100 else "")
    for size, name in _SCALES:
        if n >= size:
            if n // size >= 1000:
                raise ValueError("amount too large to write in words")
            return _en_whole(n // size) + " " + name + (" " + _en_whole(n % size) if n % size else "")
    raise AssertionError(n)


def english(amount, currency: str = "CNY") -> str:
    """1234.56 -> 'CNY one thousand two hundred thirty-four and 56/100'."""
    sign, whole, jiao, fen = _split(amount)
    words = _en_whole(whole)
    return f"{currency} {'minus ' if sign else ''}{words} and {jiao}{fen}/100"


def in_words(amount, language: str) -> str:
    """The amount (company currency, CNY) in the words of the document's language."""
    return chinese_upper(amount) if language.startswith("zh") else english(amount)

