"""Building ``Invoice`` messages from what ERPs already have: FBR's JSON, or flat dicts.

Two forms are accepted:

- FBR's own Digital Invoicing JSON (:func:`invoice_from_fbr_json`): the keys FBR documents
  (``buyerNTNCNIC``, ``valueSalesExcludingST``, ``uoM``...), FBR's texts for the invoice type
  and the registration type ("Sale Invoice", "Registered"), and numbers as JSON numbers. An
  ERP that already posts to FBR directly can send the same dict through the hub.
- The snake_case form (:func:`invoice_to_proto`): the message's own field names, every value
  a string or a number.

Both refuse what they cannot map (an unknown key, an unknown invoice type text) instead of
dropping it silently. The seller block is never sent: the hub fills it from the tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar, cast

from fbrhub.v1 import invoice_pb2

_E = TypeVar("_E", bound=int)

INVOICE_TYPES: Mapping[str, invoice_pb2.InvoiceType.ValueType] = {
    "Sale Invoice": invoice_pb2.INVOICE_TYPE_SALE_INVOICE,
    "Debit Note": invoice_pb2.INVOICE_TYPE_DEBIT_NOTE,
}
"""FBR's ``invoiceType`` texts and the enum values that stand for them."""

REGISTRATION_TYPES: Mapping[str, invoice_pb2.BuyerRegistrationType.ValueType] = {
    "Registered": invoice_pb2.BUYER_REGISTRATION_TYPE_REGISTERED,
    "Unregistered": invoice_pb2.BUYER_REGISTRATION_TYPE_UNREGISTERED,
}
"""FBR's ``buyerRegistrationType`` texts and the enum values that stand for them."""

HEADER_TEXT_FIELDS: tuple[str, ...] = (
    "invoice_date",
    "buyer_ntn_cnic",
    "buyer_business_name",
    "buyer_province",
    "buyer_address",
    "invoice_ref_no",
    "scenario_id",
)
"""The header fields of ``Invoice`` that are plain text."""

ITEM_FIELDS: tuple[str, ...] = tuple(f.name for f in invoice_pb2.InvoiceItem.DESCRIPTOR.fields)
"""Every field of ``InvoiceItem`` (all decimal or plain text strings)."""

FBR_HEADER_KEYS: Mapping[str, str] = {
    "invoiceType": "invoice_type",
    "invoiceDate": "invoice_date",
    "buyerNTNCNIC": "buyer_ntn_cnic",
    "buyerBusinessName": "buyer_business_name",
    "buyerProvince": "buyer_province",
    "buyerAddress": "buyer_address",
    "buyerRegistrationType": "buyer_registration_type",
    "invoiceRefNo": "invoice_ref_no",
    "scenarioId": "scenario_id",
}
"""FBR's JSON key -> the ``Invoice`` field, for the header."""

FBR_SELLER_KEYS = frozenset(
    {"sellerNTNCNIC", "sellerBusinessName", "sellerProvince", "sellerAddress"}
)
"""FBR's seller keys: accepted and ignored (the hub sends the tenant's seller block)."""

FBR_ITEM_KEYS: Mapping[str, str] = {
    "hsCode": "hs_code",
    "productDescription": "product_description",
    "rate": "rate",
    "uoM": "uom",
    "quantity": "quantity",
    "totalValues": "total_values",
    "valueSalesExcludingST": "value_sales_excluding_st",
    "fixedNotifiedValueOrRetailPrice": "fixed_notified_value_or_retail_price",
    "salesTaxApplicable": "sales_tax_applicable",
    "salesTaxWithheldAtSource": "sales_tax_withheld_at_source",
    "extraTax": "extra_tax",
    "furtherTax": "further_tax",
    "sroScheduleNo": "sro_schedule_no",
    "fedPayable": "fed_payable",
    "discount": "discount",
    "saleType": "sale_type",
    "sroItemSerialNo": "sro_item_serial_no",
}
"""FBR's JSON key -> the ``InvoiceItem`` field, for each line."""


def decimal_text(value: Any) -> str:
    """A money or quantity value as the decimal string the hub expects.

    ``None`` is "not given" (``""``). A float keeps the digits its ``repr`` shows
    (``1250.5`` -> ``"1250.5"``), never a binary expansion; pass ``Decimal`` or ``str`` for
    exact amounts.

    Raises:
        TypeError: for a bool or a type that is not a number or text.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, Decimal, str)):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} as an amount")


def _enum(table: Mapping[str, _E], value: Any, what: str) -> _E:
    """The enum value for FBR's text (or for the enum value itself); 0 when not given."""
    if value in (None, ""):
        return cast(_E, 0)
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in table.values():
            raise ValueError(f"{what} {value} is not a known value")
        return cast(_E, value)
    try:
        return table[str(value).strip()]
    except KeyError:
        raise ValueError(f"{what} must be one of {sorted(table)}") from None


def invoice_from_fbr_json(data: Mapping[str, Any], erp_reference: str) -> invoice_pb2.Invoice:
    """The ``Invoice`` for a Digital Invoicing request body as FBR documents it.

    Args:
        data: FBR's JSON object (parsed), e.g. ``{"invoiceType": "Sale Invoice", ...,
            "items": [{"hsCode": "0101.2100", "valueSalesExcludingST": 1000, ...}]}``.
            Keys may carry stray surrounding spaces, as FBR's own samples do.
        erp_reference: the ERP's own reference for the invoice (FBR's JSON has none).

    Returns:
        The message to submit.

    Raises:
        ValueError: for a key FBR does not document, or an invoice type or registration
            type that is not one of FBR's texts.
    """
    clean = {str(key).strip(): value for key, value in data.items()}
    unknown = set(clean) - set(FBR_HEADER_KEYS) - FBR_SELLER_KEYS - {"items"}
    if unknown:
        raise ValueError(f"not FBR invoice keys: {sorted(unknown)}")
    fields = {FBR_HEADER_KEYS[key]: value for key, value in clean.items() if key in FBR_HEADER_KEYS}
    items = []
    for index, raw in enumerate(clean.get("items") or ()):
        line = {str(key).strip(): value for key, value in raw.items()}
        unknown = set(line) - set(FBR_ITEM_KEYS)
        if unknown:
            raise ValueError(f"items[{index}]: not FBR item keys: {sorted(unknown)}")
        items.append({FBR_ITEM_KEYS[key]: value for key, value in line.items()})
    fields["items"] = items
    return invoice_to_proto(fields, erp_reference)


def invoice_to_proto(fields: Mapping[str, Any], erp_reference: str) -> invoice_pb2.Invoice:
    """The ``Invoice`` for a flat dict keyed by the message's own field names.

    ``invoice_type`` and ``buyer_registration_type`` are FBR's texts ("Sale Invoice",
    "Registered") or already enum values; amounts may be numbers or strings. ``seller_*``
    keys are ignored (the hub sends the tenant's seller block).

    Args:
        fields: the header fields plus ``items``, a list of dicts keyed by ``InvoiceItem``
            field names.
        erp_reference: the ERP's own reference for the invoice.

    Returns:
        The message to submit.

    Raises:
        ValueError: for an unknown key, invoice type or registration type.
    """
    known = {*HEADER_TEXT_FIELDS, "invoice_type", "buyer_registration_type", "items"}
    unknown = {k for k in fields if k not in known and not k.startswith("seller_")}
    unknown.discard("erp_reference")
    if unknown:
        raise ValueError(f"not Invoice fields: {sorted(unknown)}")
    message = invoice_pb2.Invoice(erp_reference=erp_reference)
    message.invoice_type = _enum(INVOICE_TYPES, fields.get("invoice_type"), "invoice_type")
    message.buyer_registration_type = _enum(
        REGISTRATION_TYPES, fields.get("buyer_registration_type"), "buyer_registration_type"
    )
    for name in HEADER_TEXT_FIELDS:
        value = fields.get(name)
        setattr(message, name, "" if value is None else str(value))
    for index, item in enumerate(fields.get("items") or ()):
        unknown = set(item) - set(ITEM_FIELDS)
        if unknown:
            raise ValueError(f"items[{index}]: not InvoiceItem fields: {sorted(unknown)}")
        line = message.items.add()
        for name, value in item.items():
            setattr(line, name, decimal_text(value))
    return message
