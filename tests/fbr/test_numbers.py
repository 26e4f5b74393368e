"""Bounded, exact numbers: every amount is measured from its text before it is evaluated.

The rule table refuses a number outside its bound (0300 too large, 0302 too many decimals)
without evaluating it, and the body builders cannot fail for an invoice the rules passed
(property-based, over the numbers Hypothesis can make of the bounds).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from clients.fbr import numbers
from clients.fbr.numbers import AMOUNT, POS_NUMBER, QUANTITY, NumberBound, UnsendableNumber
from clients.fbr.payload import (
    ITEM_NUMBER_BOUNDS,
    ITEM_NUMBER_FIELDS,
    parse_decimal,
    to_fbr_json,
)
from clients.fbr.pos.payload import to_ims_json
from clients.fbr.pos.rules import validate_pos_invoice
from clients.fbr.rules import validate_invoice
from tests.fbr.cases import CONTEXT, invoice, line
from tests.fbr.test_pos import item as pos_item
from tests.fbr.test_pos import pos_invoice

HUGE = ["9e999999", "1e1000000", "1E+39", "9" * 40, "12345678901234", "1e-1000000"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("0", (0, 0)),
        ("007.50", (1, 1)),
        ("1.5e3", (4, 0)),
        ("1e3", (4, 0)),
        (".5", (0, 1)),
        ("5.", (1, 0)),
        ("1E+39", (40, 0)),
        ("12.5e-1", (1, 2)),
        ("0.0001", (0, 4)),
        ("-1", None),
        ("abc", None),
        ("1_0", None),
        ("\u0661\u0662", None),
        (" 1", None),
        ("NaN", None),
        ("Infinity", None),
        ("", None),
        (".", None),
    ],
)
def test_digits_are_measured_from_the_text(text: str, found: tuple[int, int] | None) -> None:
    assert numbers.digits(text) == found


def test_an_exponent_too_long_for_any_bound_is_never_evaluated() -> None:
    started = time.perf_counter()
    for text in ("1e" + "9" * 5000, "1e-" + "9" * 5000, "9e999999", "1e1000000"):
        assert not numbers.within(text, AMOUNT)
        assert numbers.bounded_decimal(text, AMOUNT) is None
        assert parse_decimal(text) is None
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("text", HUGE)
@pytest.mark.parametrize("field", ["quantity", "value_sales_excluding_st", "sales_tax_applicable"])
def test_huge_numbers_are_refused_at_their_field_in_no_time(text: str, field: str) -> None:
    started = time.perf_counter()
    violations = validate_invoice(invoice(line(**{field: text})), CONTEXT)
    assert time.perf_counter() - started < 0.5
    path = f"items[0].{field}"
    codes = {v.fbr_error_code for v in violations if v.path == path}
    assert codes & {"0300", "0302"}, violations


def test_the_largest_numbers_in_bound_pass_and_one_more_digit_does_not() -> None:
    big, quantity = "9" * 13 + ".99", "9" * 11 + ".9999"
    fields = {"value_sales_excluding_st": big, "quantity": quantity}
    violations = validate_invoice(invoice(line(**fields)), CONTEXT)
    assert not [v for v in violations if v.fbr_error_code in {"0300", "0302"}]
    for name, text in fields.items():
        found = validate_invoice(invoice(line(**{name: "9" + text})), CONTEXT)
        assert ("0300", f"items[0].{name}") in {(v.fbr_error_code, v.path) for v in found}


@pytest.mark.parametrize("text", HUGE)
def test_the_body_builders_refuse_a_huge_number_without_evaluating_it(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(UnsendableNumber):
        to_fbr_json(invoice(line(quantity=text)))
    with pytest.raises(UnsendableNumber):
        to_ims_json(pos_invoice(pos_item(sale_value=text, total_amount="1")))
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("text", HUGE)
def test_pos_rules_refuse_huge_numbers_and_totals(text: str) -> None:
    violations = validate_pos_invoice(pos_invoice(pos_item(sale_value=text)))
    assert "items[0].sale_value" in {v.path for v in violations}
    many = [pos_item(sale_value="9" * 11, tax_charged="0", tax_rate="0", total_amount="9" * 11)]
    found = validate_pos_invoice(pos_invoice(*(many * 20)))
    assert "total_sale_value" in {v.path for v in found}


def _decimal_text(bound: NumberBound) -> st.SearchStrategy[str]:
    """Decimal texts within ``bound``, in every spelling the rules accept."""
    whole = st.integers(0, 10**bound.integer_digits - 1)
    fraction = st.integers(0, 10**bound.fraction_digits - 1)

    def spell(w: int, f: int, zeros: int, exponent: bool, leading: int) -> str:
        text = "0" * leading + str(w)
        if f or zeros:
            text += "." + str(f).rjust(bound.fraction_digits, "0") + "0" * zeros
        if exponent:
            value = Decimal(text)
            return f"{value.scaleb(-3)}e3" if value else "0e5"
        return text

    return st.builds(spell, whole, fraction, st.integers(0, 3), st.booleans(), st.integers(0, 2))


@seed(20260101)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_di_body_builder_cannot_fail_for_numbers_the_rules_pass(data: Any) -> None:
    values = {name: data.draw(_decimal_text(bound)) for name, bound in ITEM_NUMBER_BOUNDS.items()}
    the_line = line(**values)
    violations = validate_invoice(invoice(the_line), CONTEXT)
    assert not [v for v in violations if v.fbr_error_code in {"0300", "0302"}], violations
    body = to_fbr_json(invoice(the_line))["items"][0]
    for name, key in ITEM_NUMBER_FIELDS:
        wire, text = body[key], values[name]
        assert isinstance(wire, int | float)
        # Exact on the wire: the JSON number reads back as the very decimal the ERP wrote.
        assert Decimal(repr(wire)) == Decimal(text), (name, text, wire)


@seed(20260102)
@settings(max_examples=200, deadline=None)
@given(sale=_decimal_text(POS_NUMBER), quantity=_decimal_text(QUANTITY))
def test_the_ims_body_builder_cannot_fail_for_numbers_the_rules_pass(
    sale: str, quantity: str
) -> None:
    the_item = pos_item(sale_value=sale, quantity=quantity, tax_rate="0", tax_charged="0")
    the_item["total_amount"] = sale
    invoice_ = pos_invoice(the_item)
    number_paths = {v.path for v in validate_pos_invoice(invoice_)} - {"items[0].quantity"}
    assert "items[0].sale_value" not in number_paths
    body = to_ims_json(invoice_)
    assert Decimal(repr(body["Items"][0]["SaleValue"])) == Decimal(sale)
