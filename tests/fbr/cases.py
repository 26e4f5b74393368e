"""Broken and valid invoices for the FBR rule table, shared by the rule and simulator tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from clients.fbr.payload import NormalisedInvoice
from clients.fbr.refdata import SnapshotReferenceData, load_seed, merge_snapshots
from clients.fbr.rules import ValidationContext, Violation

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
ONLY_SN002 = ValidationContext(
    today=TODAY,
    environment="sandbox",
    seller_ntn_cnic=SELLER,
    assigned_scenarios=frozenset({"SN002"}),
)


OTHER_OWNER = ValidationContext(today=TODAY, environment="sandbox", seller_ntn_cnic="7000007")


COMPLETE_REFERENCE = SnapshotReferenceData(
    merge_snapshots(
        load_seed(),
        {"complete": {"itemdesccode": True, "SroSchedule": True, "SROItem": True}},
    )
)


COMPLETE = ValidationContext(
    today=TODAY, environment="sandbox", seller_ntn_cnic=SELLER, reference_data=COMPLETE_REFERENCE
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
