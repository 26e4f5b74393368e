"""Realistic sample invoices for the demo and the tests, valid by :mod:`clients.fbr.rules`.

:func:`scenario_invoice` builds an invoice for any FBR sandbox scenario (SN001-SN028) with the
sale type, rate, unit and SRO fields of PRAL's sample for it (docs/fbr-coverage.md §4),
plausible products and buyers, and arithmetic that agrees with the rate. :func:`break_invoice`
then spoils a valid invoice in one named way and says which FBR code and field should result.
"""

from __future__ import annotations

import datetime
import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from clients.fbr import reference
from clients.fbr.payload import (
    INVOICE_TYPE_SALE,
    REGISTERED,
    UNREGISTERED,
    NormalisedInvoice,
    parse_decimal,
)
from clients.fbr.reference import SaleTypeCategory


@dataclass(frozen=True, slots=True)
class SellerInfo:
    """The seller block of an invoice: the tenant that owns the FBR token."""

    ntn_cnic: str
    business_name: str
    province: str
    address: str


@dataclass(frozen=True, slots=True)
class _Scenario:
    rate: str
    uom: str
    sro_schedule_no: str
    sro_item_serial_no: str
    registered_buyer: bool
    products: tuple[tuple[str, str, int, int], ...]
    """(HS code, description, lowest and highest unit price in rupees)."""


_PIECES = "Numbers, pieces, units"
_HOUSEHOLD = (
    ("8516.4000", "Electric steam iron", 3500, 9000),
    ("8414.5100", "Ceiling fan 56 inch", 8000, 16000),
    ("3924.1000", "Melamine dinner set, 32 pieces", 4500, 12000),
)
_THIRD_SCHEDULE = (
    ("3401.1100", "Toilet soap 115 g", 90, 180),
    ("3305.1000", "Shampoo 360 ml", 450, 1100),
    ("2202.1010", "Carbonated soft drink 1.5 litre", 150, 260),
)
_REDUCED = (("0402.2100", "Full cream milk powder 400 g", 900, 1500),)

# Rate, unit, SRO and buyer type follow PRAL's sample for each scenario [SCN].
_SCENARIOS: dict[str, _Scenario] = {
    "SN001": _Scenario("18%", _PIECES, "", "", True, _HOUSEHOLD),
    "SN002": _Scenario("18%", _PIECES, "", "", False, _HOUSEHOLD),
    "SN003": _Scenario(
        "18%", "MT", "", "", False, (("7214.1010", "Steel billets", 180000, 230000),)
    ),
    "SN004": _Scenario("18%", "MT", "", "", False, (("7204.4990", "Steel scrap", 150000, 190000),)),
    "SN005": _Scenario("1%", _PIECES, "EIGHTH SCHEDULE Table 1", "82", False, _REDUCED),
    "SN006": _Scenario(
        "Exempt",
        _PIECES,
        "6th Schd Table I",
        "100",
        True,
        (("0713.4000", "Lentils 1 kg", 280, 420),),
    ),
    "SN007": _Scenario(
        "0%", _PIECES, "327(I)/2008", "1", False, (("5208.1100", "Grey cotton fabric", 350, 700),)
    ),
    "SN008": _Scenario("18%", _PIECES, "", "", False, _THIRD_SCHEDULE),
    "SN009": _Scenario(
        "18%", _PIECES, "", "", True, (("5201.0010", "Ginned cotton lint", 16000, 21000),)
    ),
    "SN010": _Scenario(
        "17%", _PIECES, "", "", False, (("9812.1100", "Mobile data bundle", 500, 3000),)
    ),
    "SN011": _Scenario(
        "18%", "MT", "", "", False, (("7214.9990", "Re-rolled steel bars", 190000, 240000),)
    ),
    "SN012": _Scenario(
        "1.43%", _PIECES, "1450(I)/2021", "4", False, (("2710.1210", "Motor spirit", 250, 280),)
    ),
    "SN013": _Scenario(
        "5%", _PIECES, "1450(I)/2021", "4", False, (("2716.0000", "Electrical energy", 40, 70),)
    ),
    "SN014": _Scenario("18%", _PIECES, "", "", False, (("2711.2100", "Natural gas", 3000, 4500),)),
    "SN015": _Scenario(
        "18%",
        _PIECES,
        "NINTH SCHEDULE",
        "1(A)",
        False,
        (("8517.1300", "Smartphone", 30000, 90000),),
    ),
    "SN016": _Scenario(
        "5%", _PIECES, "", "", False, (("9819.9000", "Fabric dyeing service", 800, 2500),)
    ),
    "SN017": _Scenario(
        "8%", _PIECES, "", "", False, (("2202.9900", "Energy drink 250 ml", 120, 220),)
    ),
    "SN018": _Scenario(
        "8%", _PIECES, "", "", False, (("9805.1000", "Television advertising", 20000, 90000),)
    ),
    "SN019": _Scenario(
        "5%",
        _PIECES,
        "ICTO TABLE I",
        "1(ii)(ii)(a)",
        False,
        (("9815.6000", "Software development services", 25000, 150000),),
    ),
    "SN020": _Scenario(
        "1%",
        _PIECES,
        "6th Schd Table III",
        "20",
        False,
        (("8703.8090", "Electric car", 4000000, 9000000),),
    ),
    "SN021": _Scenario(
        "Rs.3", _PIECES, "", "", False, (("6810.1100", "Concrete block 8 inch", 60, 95),)
    ),
    "SN022": _Scenario(
        "18% along with rupees 60 per kilogram",
        "KG",
        "EIGHTH SCHEDULE Table 1",
        "56",
        False,
        (("2829.1990", "Potassium chlorate", 400, 650),),
    ),
    "SN023": _Scenario(
        "Rs.200", _PIECES, "581(1)/2024", "Region-I", False, (("2711.2100", "CNG", 250, 300),)
    ),
    "SN024": _Scenario(
        "25%",
        _PIECES,
        "297(I)/2023-Table-I",
        "12",
        False,
        (("8507.6000", "Lithium-ion battery pack", 15000, 60000),),
    ),
    "SN025": _Scenario(
        "0%",
        _PIECES,
        "EIGHTH SCHEDULE Table 1",
        "81",
        False,
        (("3004.9099", "Paracetamol tablets, pack of 20", 60, 150),),
    ),
    "SN026": _Scenario("18%", _PIECES, "", "", True, _HOUSEHOLD),
    "SN027": _Scenario("18%", _PIECES, "", "", True, _THIRD_SCHEDULE),
    "SN028": _Scenario("1%", _PIECES, "EIGHTH SCHEDULE Table 1", "70", True, _REDUCED),
}

SCENARIO_IDS: tuple[str, ...] = tuple(_SCENARIOS)


def scenario_profiles() -> Mapping[str, _Scenario]:
    """Rate, unit, SRO fields, buyer type and products of each scenario (for the seed)."""
    return _SCENARIOS


_BUYERS = (
    ("Al-Noor Traders", "PUNJAB", "Shop 14, Shah Alam Market, Lahore"),
    ("Indus Home Appliances", "SINDH", "Plot B-22, SITE Area, Karachi"),
    ("Khyber General Store", "KHYBER PAKHTUNKHWA", "Saddar Road, Peshawar"),
    ("Capital Electronics", "CAPITAL TERRITORY", "Blue Area, Islamabad"),
    ("Quetta Wholesale Mart", "BALOCHISTAN", "Jinnah Road, Quetta"),
)
_CENT = Decimal("0.01")
_HUNDRED = Decimal(100)


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def _seller_fields(seller: SellerInfo | Mapping[str, str]) -> dict[str, str]:
    if isinstance(seller, SellerInfo):
        return {
            "seller_ntn_cnic": seller.ntn_cnic,
            "seller_business_name": seller.business_name,
            "seller_province": seller.province,
            "seller_address": seller.address,
        }
    keys = ("seller_ntn_cnic", "seller_business_name", "seller_province", "seller_address")
    return {key: str(seller.get(key, "")) for key in keys}


def _item(scenario: _Scenario, sale_type: str, rng: random.Random) -> dict[str, str]:
    hs_code, description, low, high = rng.choice(scenario.products)
    if scenario.uom == "MT":
        quantity = Decimal(rng.randint(5, 400)) / 10
    else:
        quantity = Decimal(rng.randint(1, 48))
    unit_price = Decimal(rng.randint(low * 100, high * 100)) / _HUNDRED
    rate = reference.rate_components(scenario.rate)
    assert rate is not None, scenario.rate  # every rate in the table parses
    category = reference.sale_type(sale_type)
    value = _money(quantity * unit_price)
    retail = Decimal(0)
    if category is not None and category.category is SaleTypeCategory.THIRD_SCHEDULE:
        # Tax is charged on the printed retail price of the line [SPEC 0102] [FAQ Q36].
        retail = value
        tax = _money(retail * (rate.percent or 0) / _HUNDRED)
        value = retail - tax
    else:
        tax = _money(
            value * (rate.percent or 0) / _HUNDRED + quantity * (rate.per_unit or Decimal(0))
        )
    return {
        "hs_code": hs_code,
        "product_description": description,
        "rate": scenario.rate,
        "uom": scenario.uom,
        "quantity": format(quantity, "f"),
        "total_values": f"{value + tax:.2f}",
        "value_sales_excluding_st": f"{value:.2f}",
        "fixed_notified_value_or_retail_price": f"{retail:.2f}",
        "sales_tax_applicable": f"{tax:.2f}",
        "sales_tax_withheld_at_source": "0",
        # Empty, not 0: FBR refuses 0 here for reduced, exempt and zero-rated lines (0091).
        "extra_tax": "",
        "further_tax": "",
        "sro_schedule_no": scenario.sro_schedule_no,
        "fed_payable": "0",
        "discount": "0",
        "sale_type": sale_type,
        "sro_item_serial_no": scenario.sro_item_serial_no,
    }


def scenario_invoice(
    scenario_id: str,
    *,
    seller: SellerInfo | Mapping[str, str],
    erp_reference: str,
    invoice_date: datetime.date,
    rng: random.Random,
) -> NormalisedInvoice:
    """A valid sandbox invoice for ``scenario_id`` (SN001-SN028) with one to three lines.

    Raises:
        KeyError: for an unknown scenario id.
    """
    scenario = _SCENARIOS[scenario_id]
    sale_type = reference.scenario_sale_type(scenario_id) or ""
    seller_fields = _seller_fields(seller)
    name, province, address = rng.choice(_BUYERS)
    buyer_id = ""
    if scenario.registered_buyer:
        while not buyer_id or buyer_id == seller_fields["seller_ntn_cnic"]:
            buyer_id = f"{rng.randint(1000000, 9999999)}"
    return {
        "erp_reference": erp_reference,
        "invoice_type": INVOICE_TYPE_SALE,
        "invoice_date": invoice_date.isoformat(),
        **seller_fields,
        "buyer_ntn_cnic": buyer_id,
        "buyer_business_name": name,
        "buyer_province": province,
        "buyer_address": address,
        "buyer_registration_type": REGISTERED if scenario.registered_buyer else UNREGISTERED,
        "invoice_ref_no": "",
        "scenario_id": scenario_id,
        "items": [_item(scenario, sale_type, rng) for _ in range(rng.randint(1, 3))],
    }


class Breakage(enum.Enum):
    """A named way to spoil a valid invoice."""

    BAD_HS_CODE = "bad_hs_code"
    FUTURE_DATE = "future_date"
    WRONG_RATE_FOR_SALE_TYPE = "wrong_rate_for_sale_type"
    CITY_AS_PROVINCE = "city_as_province"
    MISSING_BUYER_NTN = "missing_buyer_ntn"
    TAX_MISMATCH = "tax_mismatch"
    BAD_UOM = "bad_uom"
    UNKNOWN_SALE_TYPE = "unknown_sale_type"
    NEGATIVE_AMOUNT = "negative_amount"
    TOO_MANY_DECIMALS = "too_many_decimals"
    SELF_INVOICING = "self_invoicing"
    BAD_INVOICE_TYPE = "bad_invoice_type"


@dataclass(frozen=True, slots=True)
class InvalidVariant:
    """A spoiled invoice and the FBR code and field path it must be refused with."""

    breakage: Breakage
    invoice: NormalisedInvoice
    fbr_error_code: str
    path: str


def _copy(invoice: NormalisedInvoice) -> NormalisedInvoice:
    return {**invoice, "items": [dict(item) for item in invoice["items"]]}


def _tax_code(item: Mapping[str, str]) -> str:
    sale_type = reference.sale_type(item["sale_type"])
    rate = reference.rate_components(item["rate"])
    if sale_type is not None and sale_type.category is SaleTypeCategory.THIRD_SCHEDULE:
        return "0102"
    if rate is not None and rate.per_unit is not None:
        return "0105" if rate.percent is None else "0103"
    return "0104"


def break_invoice(
    invoice: NormalisedInvoice, breakage: Breakage, *, today: datetime.date
) -> InvalidVariant:
    """A copy of a valid ``invoice`` broken as ``breakage`` says (``today``: Pakistan date)."""
    broken = _copy(invoice)
    line = broken["items"][0]
    code, path = "", ""
    if breakage is Breakage.BAD_HS_CODE:
        line["hs_code"], code, path = line["hs_code"].replace(".", ""), "0019", "items[0].hs_code"
    elif breakage is Breakage.FUTURE_DATE:
        broken["invoice_date"] = (today + datetime.timedelta(days=1)).isoformat()
        code, path = "0043", "invoice_date"
    elif breakage is Breakage.WRONG_RATE_FOR_SALE_TYPE:
        allowed = reference.allowed_rates(line["sale_type"])
        line["rate"] = next(r for r in ("17%", "18%", "Exempt") if r not in allowed)
        code, path = "0046", "items[0].rate"
    elif breakage is Breakage.CITY_AS_PROVINCE:
        broken["buyer_province"], code, path = "Karachi", "0074", "buyer_province"
    elif breakage is Breakage.MISSING_BUYER_NTN:
        broken["buyer_registration_type"], broken["buyer_ntn_cnic"] = REGISTERED, ""
        code, path = "0009", "buyer_ntn_cnic"
    elif breakage is Breakage.TAX_MISMATCH:
        tax = parse_decimal(line["sales_tax_applicable"]) or Decimal(0)
        line["sales_tax_applicable"] = f"{tax * 2 + 100:.2f}"
        code, path = _tax_code(line), "items[0].sales_tax_applicable"
    elif breakage is Breakage.BAD_UOM:
        line["uom"], code, path = line["uom"].lower(), "0099", "items[0].uom"
    elif breakage is Breakage.UNKNOWN_SALE_TYPE:
        line["sale_type"], code, path = "Standard goods", "0013", "items[0].sale_type"
    elif breakage is Breakage.NEGATIVE_AMOUNT:
        line["discount"], code, path = "-5", "0300", "items[0].discount"
    elif breakage is Breakage.TOO_MANY_DECIMALS:
        line["discount"], code, path = "1.005", "0302", "items[0].discount"
    elif breakage is Breakage.SELF_INVOICING:
        broken["buyer_registration_type"] = REGISTERED
        broken["buyer_ntn_cnic"] = broken["seller_ntn_cnic"]
        code, path = "0058", "buyer_ntn_cnic"
    elif breakage is Breakage.BAD_INVOICE_TYPE:
        broken["invoice_type"], code, path = "Credit Note", "0003", "invoice_type"
    return InvalidVariant(breakage, broken, code, path)


def invalid_variants(invoice: NormalisedInvoice, *, today: datetime.date) -> list[InvalidVariant]:
    """One broken copy of a valid ``invoice`` per :class:`Breakage`."""
    return [break_invoice(invoice, breakage, today=today) for breakage in Breakage]
