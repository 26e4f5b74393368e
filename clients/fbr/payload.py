"""The FBR DI request body and its mapping to the hub's field names.

The hub works with *normalised* invoices: plain dicts keyed by the snake_case names of the
protobuf ``Invoice`` / ``InvoiceItem`` fields, with every value a string (``""`` meaning
"not given") and ``items`` a list of such dicts. The same form is produced from FBR's
camelCase JSON by :func:`from_fbr_json`, so that one rule table (``clients.fbr.rules``)
can judge both what an ERP sends to the hub and what the hub sends to FBR.

Field names and types follow the PRAL DI specification v1.12 [SPEC] (docs/fbr-coverage.md §2.3-2.5).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clients.fbr.numbers import AMOUNT, QUANTITY, NumberBound, bounded_decimal, json_number

NormalisedInvoice = dict[str, Any]
"""Header fields as ``str`` plus ``items``: ``list[dict[str, str]]``."""

# (our field, FBR JSON key)
HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("invoice_type", "invoiceType"),
    ("invoice_date", "invoiceDate"),
    ("seller_ntn_cnic", "sellerNTNCNIC"),
    ("seller_business_name", "sellerBusinessName"),
    ("seller_province", "sellerProvince"),
    ("seller_address", "sellerAddress"),
    ("buyer_ntn_cnic", "buyerNTNCNIC"),
    ("buyer_business_name", "buyerBusinessName"),
    ("buyer_province", "buyerProvince"),
    ("buyer_address", "buyerAddress"),
    ("buyer_registration_type", "buyerRegistrationType"),
    ("invoice_ref_no", "invoiceRefNo"),
    ("scenario_id", "scenarioId"),
)

ITEM_TEXT_FIELDS: tuple[tuple[str, str], ...] = (
    ("hs_code", "hsCode"),
    ("product_description", "productDescription"),
    ("rate", "rate"),
    ("uom", "uoM"),
    ("sro_schedule_no", "sroScheduleNo"),
    ("sale_type", "saleType"),
    ("sro_item_serial_no", "sroItemSerialNo"),
)

# Numeric item fields: sent to FBR as JSON numbers.
ITEM_NUMBER_FIELDS: tuple[tuple[str, str], ...] = (
    ("quantity", "quantity"),
    ("total_values", "totalValues"),
    ("value_sales_excluding_st", "valueSalesExcludingST"),
    ("fixed_notified_value_or_retail_price", "fixedNotifiedValueOrRetailPrice"),
    ("sales_tax_applicable", "salesTaxApplicable"),
    ("sales_tax_withheld_at_source", "salesTaxWithheldAtSource"),
    ("extra_tax", "extraTax"),
    ("further_tax", "furtherTax"),
    ("fed_payable", "fedPayable"),
    ("discount", "discount"),
)

# The digits each numeric item field may have (docs/fbr-coverage.md §2.4): the rule table
# refuses a number outside its bound, and the body builder never evaluates one.
ITEM_NUMBER_BOUNDS: dict[str, NumberBound] = {
    ours: QUANTITY if ours == "quantity" else AMOUNT for ours, _ in ITEM_NUMBER_FIELDS
}

# Numeric fields that are required by the specification (sent as 0 when empty would be wrong,
# so an empty value is a validation error instead). The optional ones may be omitted.
REQUIRED_NUMBER_FIELDS: frozenset[str] = frozenset(
    {
        "quantity",
        "total_values",
        "value_sales_excluding_st",
        "fixed_notified_value_or_retail_price",
        "sales_tax_applicable",
        "sales_tax_withheld_at_source",
    }
)

# Numeric fields that FBR wants as the empty string "" rather than 0 for reduced-rate,
# exempt and zero-rated sale types (error 0091; docs/fbr-coverage.md §2.5).
EMPTY_STRING_WHEN_BLANK: frozenset[str] = frozenset({"extra_tax"})

ITEM_FIELDS: tuple[tuple[str, str], ...] = ITEM_TEXT_FIELDS + ITEM_NUMBER_FIELDS

INVOICE_TYPE_SALE = "Sale Invoice"
INVOICE_TYPE_DEBIT_NOTE = "Debit Note"
REGISTERED = "Registered"
UNREGISTERED = "Unregistered"


# Wider than any field's bound: what arithmetic on a parsed number may safely meet.
_PARSE_BOUND = NumberBound(30, 30)


def parse_decimal(value: str) -> Decimal | None:
    """Parse a decimal string (an optional ``-`` sign, then a plain decimal).

    Returns:
        The value; ``None`` if it is empty, not a decimal, or has more than 30 digits before
        or after the point (no huge exponent is ever evaluated, see :mod:`clients.fbr.numbers`).
    """
    negative = value.startswith("-")
    number = bounded_decimal(value[1:] if negative else value, _PARSE_BOUND)
    return -number if negative and number is not None else number


def to_fbr_json(invoice: NormalisedInvoice) -> dict[str, Any]:
    """Build the DI request body (camelCase keys, numbers as JSON numbers).

    Raises:
        UnsendableNumber: a number outside its bound (``ITEM_NUMBER_BOUNDS``), which the rule
            table refuses (0300, 0302): never raised for an invoice that passed validation.

    Empty optional header fields are omitted (``invoiceRefNo``, ``scenarioId``, and an empty
    ``buyerNTNCNIC``, as for unregistered buyers; docs/fbr-coverage.md §2.5). Empty
    ``extraTax`` is sent as ``""``; other empty optional numbers are omitted.
    """
    body: dict[str, Any] = {}
    for ours, theirs in HEADER_FIELDS:
        value = invoice.get(ours, "")
        if value == "" and ours in {"invoice_ref_no", "scenario_id", "buyer_ntn_cnic"}:
            continue
        body[theirs] = value
    items: list[dict[str, Any]] = []
    for item in invoice.get("items", []):
        out: dict[str, Any] = {}
        for ours, theirs in ITEM_TEXT_FIELDS:
            out[theirs] = item.get(ours, "")
        for ours, theirs in ITEM_NUMBER_FIELDS:
            value = item.get(ours, "")
            if value == "":
                if ours in EMPTY_STRING_WHEN_BLANK:
                    out[theirs] = ""
                elif ours in REQUIRED_NUMBER_FIELDS:
                    out[theirs] = 0
                continue
            out[theirs] = json_number(value, ITEM_NUMBER_BOUNDS[ours])
        items.append(out)
    body["items"] = items
    return body


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        # repr keeps the digits the sender wrote for ordinary values (0.1 -> "0.1").
        return repr(value)
    return str(value)


def from_fbr_json(body: dict[str, Any]) -> NormalisedInvoice:
    """Normalise a DI request body into the hub's form (every value a string).

    Keys are matched exactly, except that stray surrounding spaces in keys are ignored
    (PRAL's own production sample has ``"buyerRegistrationType "``).
    """
    clean = {str(k).strip(): v for k, v in body.items()}
    invoice: NormalisedInvoice = {
        ours: _as_text(clean.get(theirs)) for ours, theirs in HEADER_FIELDS
    }
    items: list[dict[str, str]] = []
    raw_items = clean.get("items")
    if isinstance(raw_items, list):
        for raw in raw_items:
            raw_clean = {str(k).strip(): v for k, v in raw.items()} if isinstance(raw, dict) else {}
            items.append({ours: _as_text(raw_clean.get(theirs)) for ours, theirs in ITEM_FIELDS})
    invoice["items"] = items
    return invoice
