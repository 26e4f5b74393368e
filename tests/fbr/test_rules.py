"""The FBR rule table: every code it checks, the sample invoices, and the tolerance chosen.

``CASES`` (tests/fbr/cases.py) is shared with tests/simulator/test_simulator.py, which posts
the same invoices to the simulator over HTTP and expects the same FBR codes back.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from clients.fbr import reference
from clients.fbr.payload import from_fbr_json, to_fbr_json
from clients.fbr.rules import RULES, ValidationContext, validate_invoice
from clients.fbr.samples import (
    SCENARIO_IDS,
    Breakage,
    SellerInfo,
    break_invoice,
    invalid_variants,
    scenario_invoice,
)
from tests.fbr.cases import (
    CASES,
    CONTEXT,
    PRODUCTION,
    SELLER,
    TODAY,
    Case,
    chlorate,
    first_reported,
    invoice,
    line,
    pairs,
    per_unit,
    reduced,
    third_schedule,
)

# The seed with its partial lists marked whole: absence from them now refuses.


def test_the_base_invoices_are_valid() -> None:
    lines = [line(), third_schedule(), reduced(), per_unit(), chlorate()]
    assert validate_invoice(invoice(*lines), CONTEXT) == []


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_broken_invoice_gets_its_fbr_code_at_its_path(case: Case) -> None:
    violations = validate_invoice(case.invoice, case.context)
    first = first_reported(violations, case.path)
    assert (first.fbr_error_code, first.path) == (case.code, case.path), violations
    assert first.message


def test_every_rule_is_exercised_by_a_case() -> None:
    exercised = {
        rule.rule_id
        for case in CASES
        for rule in RULES
        if (case.code, case.path) in pairs(list(rule.check(case.invoice, case.context)))
    }
    assert exercised == {rule.rule_id for rule in RULES}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_validate_invoice_equals_running_every_rule(case: Case) -> None:
    one_pass = Counter(validate_invoice(case.invoice, case.context))
    per_rule = Counter(v for rule in RULES for v in rule.check(case.invoice, case.context))
    assert one_pass == per_rule


def test_all_violations_of_an_invoice_are_collected() -> None:
    broken = invoice(
        line(hs_code="85164000"),
        line(rate="17%", uom="kg"),
        invoice_date="2025-05-20",
        buyer_province="Lahore",
    )
    assert set(pairs(validate_invoice(broken, CONTEXT))) == {
        ("0043", "invoice_date"),
        ("0074", "buyer_province"),
        ("0019", "items[0].hs_code"),
        ("0046", "items[1].rate"),
        ("0099", "items[1].uom"),
    }


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_messages_never_repeat_personal_data(case: Case) -> None:
    personal = [
        case.invoice.get(key, "")
        for key in (
            "seller_ntn_cnic",
            "seller_business_name",
            "seller_address",
            "buyer_ntn_cnic",
            "buyer_business_name",
            "buyer_address",
        )
    ]
    for violation in validate_invoice(case.invoice, case.context):
        for value in personal:
            if len(value.strip()) >= 5:
                assert value not in violation.message


@pytest.mark.parametrize(
    ("value", "tax", "valid"),
    [
        ("100.00", "19.00", True),  # 18 + Rs 1.00: within the floor
        ("100.00", "19.01", False),
        ("1000000.00", "180900.00", True),  # 180000 + 0.5%
        ("1000000.00", "180900.01", False),
        ("99.99", "18.00", True),  # 17.9982, rounded
    ],
)
def test_tax_tolerance_is_one_rupee_or_half_a_percent(value: str, tax: str, valid: bool) -> None:
    item = line(value_sales_excluding_st=value, sales_tax_applicable=tax)
    assert (validate_invoice(invoice(item), CONTEXT) == []) is valid


# Lines of PRAL's own sandbox samples [SCN], as FBR JSON: their arithmetic must pass.
PRAL_LINES = [
    {"saleType": "3rd Schedule Goods", "rate": "18%", "quantity": 100, "valueSalesExcludingST": 1,
     "fixedNotifiedValueOrRetailPrice": 1000, "salesTaxApplicable": 180},
    {"saleType": "Cement /Concrete Block", "rate": "Rs.3", "quantity": 12,
     "valueSalesExcludingST": 10, "fixedNotifiedValueOrRetailPrice": 3, "salesTaxApplicable": 36},
    {"saleType": "Potassium Chlorate", "rate": "18% along with rupees 60 per kilogram",
     "quantity": 1, "valueSalesExcludingST": 100, "fixedNotifiedValueOrRetailPrice": 60,
     "salesTaxApplicable": 78},
    {"saleType": "CNG Sales", "rate": "Rs.200", "quantity": 123, "valueSalesExcludingST": 234,
     "fixedNotifiedValueOrRetailPrice": 200, "salesTaxApplicable": 24600},
    {"saleType": "Goods at Reduced Rate", "rate": "1%", "quantity": 1,
     "valueSalesExcludingST": 99.01, "fixedNotifiedValueOrRetailPrice": 100,
     "salesTaxApplicable": 0.99},
    {"saleType": "Mobile Phones", "rate": "18%", "quantity": 123, "valueSalesExcludingST": 1234,
     "fixedNotifiedValueOrRetailPrice": 0, "salesTaxApplicable": 222.12},
    {"saleType": "Petroleum Products", "rate": "1.43%", "quantity": 123,
     "valueSalesExcludingST": 100, "fixedNotifiedValueOrRetailPrice": 0,
     "salesTaxApplicable": 1.43},
]  # fmt: skip


@pytest.mark.parametrize("sample", PRAL_LINES, ids=lambda sample: sample["saleType"])
def test_pral_sample_arithmetic_passes(sample: dict[str, Any]) -> None:
    body = to_fbr_json(invoice())
    body["items"][0].update(sample)
    violations = validate_invoice(from_fbr_json(body), CONTEXT)
    assert not {"0102", "0103", "0104", "0105"} & {v.fbr_error_code for v in violations}


def test_provinces_match_ignoring_case_but_cities_do_not() -> None:
    assert (
        validate_invoice(invoice(seller_province="Sindh", buyer_province="punjab"), CONTEXT) == []
    )
    assert reference.is_known_province("FATA/PATA")
    assert not reference.is_known_province("Karachi")
    assert not reference.is_known_province(" SINDH")


def test_sale_types_are_exact_including_the_pipe() -> None:
    assert reference.is_known_sale_type("Goods as per SRO.297(|)/2023")
    assert not reference.is_known_sale_type("Goods as per SRO.297(I)/2023")
    assert reference.allowed_rates("Goods at standard rate (default)") == {"18%"}
    assert reference.allowed_rates("no such sale type") == frozenset()


@pytest.mark.parametrize(
    ("seller", "reference_number", "valid"),
    [
        ("8885801", "8885801DI1747119701593", True),
        ("8885801", "8885801DI17471197015931", False),
        ("4130276175937", "4130276175937DI1747119701593", True),
        ("4130276175937", "8885801DI1747119701593", False),
    ],
)
def test_debit_note_reference_length_follows_the_seller_id(
    seller: str, reference_number: str, valid: bool
) -> None:
    note = invoice(
        invoice_type="Debit Note", invoice_ref_no=reference_number, seller_ntn_cnic=seller
    )
    context = ValidationContext(today=TODAY, environment="sandbox", seller_ntn_cnic=seller)
    assert (validate_invoice(note, context) == []) is valid


def test_scenario_id_is_accepted_in_the_sandbox_only() -> None:
    sandbox_invoice = invoice(scenario_id="SN001")
    assert validate_invoice(sandbox_invoice, CONTEXT) == []
    assert pairs(validate_invoice(sandbox_invoice, PRODUCTION)) == [("0203", "scenario_id")]


# --- samples ----------------------------------------------------------------------------------

SELLER_INFO = SellerInfo(SELLER, "Mehran Appliances", "SINDH", "Plot 7, Korangi, Karachi")


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_every_sample_scenario_invoice_validates_clean(scenario: str) -> None:
    rng = random.Random(scenario)
    for _ in range(20):
        sample = scenario_invoice(
            scenario, seller=SELLER_INFO, erp_reference="ERP-1", invoice_date=TODAY, rng=rng
        )
        assert validate_invoice(sample, CONTEXT) == []
        # ... and still after a round trip through FBR's JSON.
        assert validate_invoice(from_fbr_json(to_fbr_json(sample)), CONTEXT) == []
        assert sample["scenario_id"] == scenario
        assert {item["sale_type"] for item in sample["items"]} == {
            reference.scenario_sale_type(scenario)
        }


def test_sample_seller_fields_come_from_the_seller_argument() -> None:
    as_dict = {
        "seller_ntn_cnic": "4130276175937",
        "seller_business_name": "Karachi Cement Works",
        "seller_province": "SINDH",
        "seller_address": "Port Qasim, Karachi",
    }
    sample = scenario_invoice(
        "SN021", seller=as_dict, erp_reference="E-9", invoice_date=TODAY, rng=random.Random(1)
    )
    assert {key: sample[key] for key in as_dict} == as_dict
    assert sample["erp_reference"] == "E-9"
    assert sample["invoice_date"] == "2025-05-13"


@pytest.mark.parametrize("scenario", ["SN001", "SN006", "SN008", "SN021", "SN022", "SN024"])
def test_invalid_variants_fail_with_the_announced_code(scenario: str) -> None:
    sample = scenario_invoice(
        scenario, seller=SELLER_INFO, erp_reference="E", invoice_date=TODAY, rng=random.Random(7)
    )
    variants = invalid_variants(sample, today=TODAY)
    assert {variant.breakage for variant in variants} == set(Breakage)
    for variant in variants:
        first = first_reported(validate_invoice(variant.invoice, CONTEXT), variant.path)
        assert (first.fbr_error_code, first.path) == (variant.fbr_error_code, variant.path)
    assert validate_invoice(sample, CONTEXT) == []  # the original is left intact


def test_break_invoice_names_the_tax_code_of_the_sale_type() -> None:
    expected = {"SN001": "0104", "SN008": "0102", "SN021": "0105", "SN022": "0103"}
    for scenario, code in expected.items():
        sample = scenario_invoice(
            scenario,
            seller=SELLER_INFO,
            erp_reference="E",
            invoice_date=TODAY,
            rng=random.Random(3),
        )
        assert break_invoice(sample, Breakage.TAX_MISMATCH, today=TODAY).fbr_error_code == code


@pytest.mark.parametrize(
    ("text", "sent"),
    [("100", 100), ("007", 7), ("100.00", 100), ("237.44", 237.44), ("0.5", 0.5), ("1e3", 1000)],
)
def test_numbers_go_to_fbr_as_json_numbers_whole_ones_as_integers(text: str, sent: float) -> None:
    line = invoice()["items"][0]
    body = to_fbr_json(invoice(items=[{**line, "quantity": text}]))
    value = body["items"][0]["quantity"]
    assert value == sent
    assert isinstance(value, int) == (sent == int(sent))
