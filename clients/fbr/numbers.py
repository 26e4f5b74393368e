"""Bounded, exact numbers: how many digits an amount may have, read from its text alone.

ERPs send amounts as decimal text. A text such as ``9e999999`` is a valid decimal whose
value has a million digits: turning it into an integer, normalising it or multiplying it
costs seconds of CPU or raises ``decimal.Overflow``. So every number is first *measured*
from its text (the digits before and after the point, exponent applied by arithmetic on
the digit counts, never on the value), and only a number within its :class:`NumberBound`
is ever evaluated.

The bounds keep every amount exact on the wire: FBR's bodies carry JSON numbers, which FBR
(and most JSON parsers) read as IEEE doubles, and a decimal of at most 15 significant digits
survives that round trip unchanged. The bounds themselves are in docs/fbr-coverage.md §2.4
and the limits table of docs/security-and-privacy.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

# A non-negative decimal text: integer digits, fraction digits, exponent (all optional, but
# at least one digit before or after the point).
_NUMBER = re.compile(r"(?=\.?\d)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?", re.ASCII)
# Exponents beyond this many digits are out of every bound: no arithmetic on them at all.
_EXPONENT_DIGITS = 6
_OUT_OF_RANGE = (10**_EXPONENT_DIGITS, 10**_EXPONENT_DIGITS)


@dataclass(frozen=True, slots=True)
class NumberBound:
    """How many digits a number may have before and after the decimal point."""

    integer_digits: int
    fraction_digits: int


AMOUNT = NumberBound(13, 2)
"""Rupee amounts: below 10 trillion, to the paisa (13 + 2 = 15 significant digits)."""
QUANTITY = NumberBound(11, 4)
"""Quantities: FBR allows 4 decimals (0302); 11 + 4 = 15 significant digits."""
POS_NUMBER = NumberBound(11, 4)
"""IMS (POS) numbers, sums included: FBR documents doubles; 4 decimals cover every rate and
quantity, and 11 + 4 = 15 significant digits stay exact."""


def digits(text: str) -> tuple[int, int] | None:
    """The significant digits before and after the point of a non-negative decimal text.

    Leading zeros before and trailing zeros after the point do not count (``007.50`` is
    ``(1, 1)``); an exponent moves the point (``1.5e3`` is ``(4, 0)``). An exponent too long
    to be in any bound gives a pair larger than every bound, without evaluating it.

    Returns:
        ``(integer digits, fraction digits)``, or None if the text is not a plain
        non-negative decimal (a sign, spaces, ``NaN``, ``Infinity``, separators, ...).
    """
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    whole, fraction, exponent_text = match[1], match[2] or "", match[3]
    exponent = 0
    if exponent_text is not None:
        magnitude = exponent_text.lstrip("+-").lstrip("0")
        if len(magnitude) > _EXPONENT_DIGITS:
            return _OUT_OF_RANGE
        exponent = int(exponent_text)
    mantissa = whole + fraction
    significant = mantissa.lstrip("0")
    if not significant:
        return (0, 0)
    leading = len(mantissa) - len(significant)
    end = len(mantissa) - (len(significant) - len(significant.rstrip("0")))
    point = len(whole) + exponent
    return (max(0, point - leading), max(0, end - point))


def within(text: str, bound: NumberBound) -> bool | None:
    """Whether a decimal text is within ``bound``; None if it is not a decimal at all."""
    found = digits(text)
    if found is None:
        return None
    return found[0] <= bound.integer_digits and found[1] <= bound.fraction_digits


def bounded_decimal(text: str, bound: NumberBound) -> Decimal | None:
    """The value of a decimal text within ``bound``; None if empty, not one, or out of bound.

    The only way the hub turns ERP text into a :class:`~decimal.Decimal`: an out-of-bound
    exponent never reaches the decimal module.
    """
    return Decimal(text) if text and within(text, bound) else None


class UnsendableNumber(ValueError):
    """A number the hub will not put in an FBR body: not a decimal, or outside its bound.

    Validation refuses such numbers before an invoice is stored; this is the body builder's
    own guard, for invoices stored before a bound existed. Its message names no value.
    """


def json_number(text: str, bound: NumberBound) -> int | float | str:
    """A decimal text as the JSON number FBR reads: integral values as ``int``.

    A text that is no decimal at all goes as it is, a JSON string, which FBR refuses with
    0300 as it would any string (the simulator's tests send such bodies on purpose).

    Too many decimals are FBR's to refuse (0302, as the simulator's tests check), so only
    the integer digits are held to ``bound`` here: they are what could make the value huge.

    Raises:
        UnsendableNumber: a decimal with more integer digits than ``bound`` allows, or an
            exponent beyond every bound.
    """
    if text.isascii() and text.isdigit() and len(text) <= bound.integer_digits:
        return int(text)  # whole numbers ("0", "100"): most of them
    found = digits(text)
    if found is None:
        return text
    if found[0] > bound.integer_digits or found == _OUT_OF_RANGE:
        raise UnsendableNumber("a number is outside its bound")
    number = Decimal(text)
    # Within the bound, float() is exact to the digits the ERP wrote (<= 15 significant).
    if number == number.to_integral_value():
        return int(number)
    return float(number)
