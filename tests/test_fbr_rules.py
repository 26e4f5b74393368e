"""The FBR rule table: every code it checks, the sample invoices, and the tolerance chosen.

``CASES`` is shared with tests/test_fbr_simulator.py, which posts the same invoices to the
simulator over HTTP and expects the same FBR codes back.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from clients.fbr import reference
from clients.fbr.payload import NormalisedInvoice, from_fbr_json, to_fbr_json
from clients.fbr.refdata import SnapshotReferenceData, load_seed, merge_snapshots
from clients.fbr.rules import RULES, ValidationContext, Violation, validate_invoice
from clients.fbr.samples import (
    SCENARIO_IDS,
    Breakage,
    SellerInfo,
    break_invoice,
    invalid_variants,
    scenario_invoice,
)

TODAY = dt.date(2025, 5, 13)
SELLER = "8885801"
CONTEXT = ValidationContext(today=TODAY, environment="sandbox", seller_ntn_cnic=SELLER)


def line(**overrides: str) -> dict[str, str]:
    """A valid standard-rate line: 2 x 1000 at 18%."""
    values = {
        "hs_code": "8516.4000",
        "product_description": "Electric steam iron",
        "rate": "18%",
        "uom": "Numbers, pieces, units",
        "quantity": "2",
        "total_values": "2360.00",
        "value_sales_excluding_st": "2000.00",
        "fixed_notified_value_or_retail_price": "0",
        "sales_tax_applicable": "360.00",
        "sales_tax_withheld_at_source": "0",
        "extra_tax": "",
        "further_tax": "",
        "sro_schedule_no": "",
        "fed_payable": "0",
        "discount": "0",
        "sale_type": "Goods at standard rate (default)",
        "sro_item_serial_no": "",
    }
    values.update(overrides)
    return values


def third_schedule(**overrides: str) -> dict[str, str]:
    """Retail price 1000 at 18%: tax 180."""
    values = {
        "sale_type": "3rd Schedule Goods",
        "fixed_notified_value_or_retail_price": "1000.00",
        "value_sales_excluding_st": "820.00",
        "sales_tax_applicable": "180.00",
    }
    return line(**{**values, **overrides})


def reduced(**overrides: str) -> dict[str, str]:
    """1000 at 1% under the Eighth Schedule."""
    values = {
        "sale_type": "Goods at Reduced Rate",
        "rate": "1%",
        "value_sales_excluding_st": "1000.00",
        "sales_tax_applicable": "10.00",
        "sro_schedule_no": "EIGHTH SCHEDULE Table 1",
        "sro_item_serial_no": "82",
    }
    return line(**{**values, **overrides})


def per_unit(**overrides: str) -> dict[str, str]:
    """12 concrete blocks at Rs.3 each."""
    values = {
        "sale_type": "Cement /Concrete Block",
        "rate": "Rs.3",
        "quantity": "12",
        "value_sales_excluding_st": "900.00",
        "sales_tax_applicable": "36.00",
    }
    return line(**{**values, **overrides})


def chlorate(**overrides: str) -> dict[str, str]:
    """1 KG at 18% of 100 plus Rs 60 per KG: 78."""
    values = {
        "sale_type": "Potassium Chlorate",
        "rate": "18% along with rupees 60 per kilogram",
        "uom": "KG",
        "quantity": "1",
        "value_sales_excluding_st": "100.00",
        "sales_tax_applicable": "78.00",
        "sro_schedule_no": "EIGHTH SCHEDULE Table 1",
        "sro_item_serial_no": "56",
    }
    return line(**{**values, **overrides})


def invoice(*lines: dict[str, str], **header: Any) -> NormalisedInvoice:
    """A valid sale invoice to a registered buyer (lines default to one standard line)."""
    values: NormalisedInvoice = {
        "invoice_type": "Sale Invoice",
        "invoice_date": "2025-05-10",
        "seller_ntn_cnic": SELLER,
        "seller_business_name": "Mehran Appliances",
        "seller_province": "SINDH",
        "seller_address": "Plot 7, Korangi Industrial Area, Karachi",
        "buyer_ntn_cnic": "2046004",
        "buyer_business_name": "Al-Noor Traders",
        "buyer_province": "PUNJAB",
        "buyer_address": "Shop 14, Shah Alam Market, Lahore",
        "buyer_registration_type": "Registered",
        "invoice_ref_no": "",
        "scenario_id": "",
        "items": list(lines) if lines else [line()],
    }
    values.update(header)
    return values


@dataclass(frozen=True)
class Case:
    """An invoice that breaks one rule, and the FBR code and path it must get."""

    name: str
    invoice: NormalisedInvoice
    code: str
    path: str
    context: ValidationContext = CONTEXT
    over_the_wire: bool = True
    """False when the hub's JSON cannot carry the fault (it sends an empty number as 0)."""
    extra: dict[str, Any] = field(default_factory=dict)
    originals: dict[str, dt.date] = field(default_factory=dict)
    """Accepted invoices (FBR number -> date) the case's debit note may cite."""


PRODUCTION = ValidationContext(today=TODAY, environment="production", seller_ntn_cnic=SELLER)
OTHER_OWNER = ValidationContext(today=TODAY, environment="sandbox", seller_ntn_cnic="7000007")
# The seed with its partial lists marked whole: absence from them now refuses.
COMPLETE_REFERENCE = SnapshotReferenceData(
    merge_snapshots(
        load_seed(),
        {"complete": {"itemdesccode": True, "SroSchedule": True, "SROItem": True}},
    )
)
COMPLETE = ValidationContext(
    today=TODAY, environment="sandbox", seller_ntn_cnic=SELLER, reference_data=COMPLETE_REFERENCE
)
ONLY_SN002 = ValidationContext(
    today=TODAY,
    environment="sandbox",
    seller_ntn_cnic=SELLER,
    assigned_scenarios=frozenset({"SN002"}),
)
ORIGINAL = f"{SELLER}DI1747119701593"


def with_originals(originals: dict[str, dt.date]) -> ValidationContext:
    """CONTEXT whose debit-note lookup knows ``originals``."""
    return ValidationContext(
        today=TODAY, environment="sandbox", seller_ntn_cnic=SELLER, original_invoice=originals.get
    )


def note(**header: Any) -> NormalisedInvoice:
    """A debit note citing ORIGINAL."""
    return invoice(invoice_type="Debit Note", invoice_ref_no=ORIGINAL, **header)


def debit_case(
    name: str, original_date: dt.date | None, code: str, path: str, **header: Any
) -> Case:
    """A debit-note case whose seller has one accepted invoice of ``original_date``."""
    originals = {ORIGINAL: original_date} if original_date else {}
    return Case(name, note(**header), code, path, with_originals(originals), originals=originals)


CASES: tuple[Case, ...] = (
    Case("seller id malformed", invoice(seller_ntn_cnic="88858"), "0108", "seller_ntn_cnic"),
    Case("seller not token owner", invoice(), "0401", "seller_ntn_cnic", context=OTHER_OWNER),
    Case("credit note", invoice(invoice_type="Credit Note"), "0003", "invoice_type"),
    Case("date missing", invoice(invoice_date=""), "0042", "invoice_date"),
    Case("date not ISO", invoice(invoice_date="10-05-2025"), "0005", "invoice_date"),
    Case("date not real", invoice(invoice_date="2025-02-30"), "0005", "invoice_date"),
    Case("date tomorrow", invoice(invoice_date="2025-05-14"), "0043", "invoice_date"),
    Case("debit note unref", invoice(invoice_type="Debit Note"), "0026", "invoice_ref_no"),
    Case(
        "debit note ref too short",
        invoice(invoice_type="Debit Note", invoice_ref_no="8885801DI174711970159"),
        "0026",
        "invoice_ref_no",
    ),
    Case("seller city", invoice(seller_province="Karachi"), "0073", "seller_province"),
    Case(
        "no registration type",
        invoice(buyer_registration_type=""),
        "0012",
        "buyer_registration_type",
    ),
    Case("registered no id", invoice(buyer_ntn_cnic=""), "0009", "buyer_ntn_cnic"),
    Case("buyer id dashed", invoice(buyer_ntn_cnic="2046004-1"), "0002", "buyer_ntn_cnic"),
    Case("self invoicing", invoice(buyer_ntn_cnic=SELLER), "0058", "buyer_ntn_cnic"),
    Case("buyer name blank", invoice(buyer_business_name="  "), "0010", "buyer_business_name"),
    Case("buyer city", invoice(buyer_province="Lahore"), "0074", "buyer_province"),
    Case("scenario unknown", invoice(scenario_id="SN029"), "0203", "scenario_id"),
    Case("scenario in production", invoice(scenario_id="SN001"), "0203", "scenario_id", PRODUCTION),
    Case("scenario not assigned", invoice(scenario_id="SN001"), "0203", "scenario_id", ONLY_SN002),
    debit_case("debit note original unknown", None, "0057", "invoice_ref_no"),
    debit_case("debit note before original", dt.date(2025, 5, 11), "0029", "invoice_date"),
    debit_case("debit note after 180 days", dt.date(2024, 11, 10), "0034", "invoice_date"),
    Case(
        "hs code not in itemdesccode",
        invoice(line(hs_code="9999.9999")),
        "0044",
        "items[0].hs_code",
        COMPLETE,
    ),
    Case(
        "uom not allowed for the hs code",
        invoice(line(hs_code="5904.9000")),
        "0099",
        "items[0].uom",
    ),
    Case(
        "sro not in SroSchedule",
        invoice(reduced(sro_schedule_no="NINTH SCHEDULE")),
        "0077",
        "items[0].sro_schedule_no",
        COMPLETE,
    ),
    Case(
        "sro serial not in SROItem",
        invoice(reduced(sro_item_serial_no="999")),
        "0078",
        "items[0].sro_item_serial_no",
        COMPLETE,
    ),
    Case("no lines", invoice(items=[]), "0021", "items"),
    Case(
        "sale type lowercase",
        invoice(line(sale_type="goods at standard rate (default)")),
        "0013",
        "items[0].sale_type",
    ),
    Case("scenario sale type", invoice(scenario_id="SN005"), "0204", "items[0].sale_type"),
    Case("hs code short", invoice(line(), line(hs_code="8516.40")), "0019", "items[1].hs_code"),
    Case("uom lowercase", invoice(line(uom="numbers, pieces, units")), "0099", "items[0].uom"),
    Case("chlorate not in KG", invoice(chlorate(uom="MT")), "0097", "items[0].uom"),
    Case(
        "steel not in MT",
        invoice(line(sale_type="Steel melting and re-rolling", uom="KG")),
        "0062",
        "items[0].uom",
    ),
    Case("rate wrong", invoice(line(rate="17%")), "0046", "items[0].rate"),
    Case("rate missing", invoice(line(rate="")), "0046", "items[0].rate"),
    Case("sro missing", invoice(reduced(sro_schedule_no="")), "0077", "items[0].sro_schedule_no"),
    Case(
        "sro serial missing",
        invoice(reduced(sro_item_serial_no="")),
        "0078",
        "items[0].sro_item_serial_no",
    ),
    Case(
        "quantity missing",
        invoice(line(quantity="")),
        "0098",
        "items[0].quantity",
        over_the_wire=False,
    ),
    Case(
        "value missing",
        invoice(line(value_sales_excluding_st="")),
        "0021",
        "items[0].value_sales_excluding_st",
        over_the_wire=False,
    ),
    Case(
        "tax missing",
        invoice(line(sales_tax_applicable="")),
        "0018",
        "items[0].sales_tax_applicable",
        over_the_wire=False,
    ),
    Case("discount negative", invoice(line(discount="-1")), "0300", "items[0].discount"),
    Case("fed not a number", invoice(line(fed_payable="1,000")), "0300", "items[0].fed_payable"),
    Case(
        "tax 3 decimals",
        invoice(line(sales_tax_applicable="360.001")),
        "0302",
        "items[0].sales_tax_applicable",
    ),
    Case("quantity 5 decimals", invoice(line(quantity="2.00001")), "0302", "items[0].quantity"),
    Case("extra tax 0 on reduced", invoice(reduced(extra_tax="0")), "0091", "items[0].extra_tax"),
    Case(
        "3rd schedule no retail price",
        invoice(third_schedule(fixed_notified_value_or_retail_price="0")),
        "0090",
        "items[0].fixed_notified_value_or_retail_price",
    ),
    Case(
        "3rd schedule tax on value",
        invoice(third_schedule(sales_tax_applicable="147.60")),
        "0102",
        "items[0].sales_tax_applicable",
    ),
    Case(
        "tax wrong",
        invoice(line(sales_tax_applicable="300.00")),
        "0104",
        "items[0].sales_tax_applicable",
    ),
    Case(
        "exempt taxed",
        invoice(
            line(
                sale_type="Exempt goods",
                rate="Exempt",
                sro_schedule_no="6th Schd Table I",
                sro_item_serial_no="100",
            )
        ),
        "0104",
        "items[0].sales_tax_applicable",
    ),
    Case(
        "per unit tax wrong",
        invoice(per_unit(sales_tax_applicable="40.00")),
        "0105",
        "items[0].sales_tax_applicable",
    ),
    Case(
        "chlorate tax wrong",
        invoice(chlorate(sales_tax_applicable="18.00")),
        "0103",
        "items[0].sales_tax_applicable",
    ),
    Case(
        "cotton ginner withholding",
        invoice(line(sale_type="Cotton ginners", sales_tax_withheld_at_source="100")),
        "0008",
        "items[0].sales_tax_withheld_at_source",
    ),
    Case(
        "electricity 5% above 20,000 a unit",
        invoice(
            line(
                sale_type="Electricity Supply to Retailers",
                rate="5%",
                quantity="1",
                value_sales_excluding_st="25000.00",
                sales_tax_applicable="1250.00",
                sro_schedule_no="1450(I)/2021",
                sro_item_serial_no="4",
            )
        ),
        "0079",
        "items[0].rate",
    ),
)


def pairs(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.fbr_error_code, v.path) for v in violations]


def first_reported(violations: list[Violation], path: str) -> Violation:
    """What FBR reports for the header or line of ``path``: its first violation."""
    prefix = path.split(".", 1)[0] if path.startswith("items[") else None
    for violation in violations:
        if prefix is None and not violation.path.startswith("items["):
            return violation
        if prefix is not None and violation.path.split(".", 1)[0] == prefix:
            return violation
    raise AssertionError(f"nothing reported at {path}: {violations}")


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
