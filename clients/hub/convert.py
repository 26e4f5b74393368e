"""Pure conversions from the normalised invoice form to the hub's protobuf messages.

The normalised form (see :mod:`clients.fbr.payload`) is what ERP adapters and the sample
builders produce: snake_case string fields plus ``items``. The seller block is not sent:
the hub fills it from the caller's tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clients.fbr import payload
from fbrhub.v1 import invoice_pb2

INVOICE_TYPES: Mapping[str, invoice_pb2.InvoiceType.ValueType] = {
    payload.INVOICE_TYPE_SALE: invoice_pb2.INVOICE_TYPE_SALE_INVOICE,
    payload.INVOICE_TYPE_DEBIT_NOTE: invoice_pb2.INVOICE_TYPE_DEBIT_NOTE,
}
REGISTRATION_TYPES: Mapping[str, invoice_pb2.BuyerRegistrationType.ValueType] = {
    payload.REGISTERED: invoice_pb2.BUYER_REGISTRATION_TYPE_REGISTERED,
    payload.UNREGISTERED: invoice_pb2.BUYER_REGISTRATION_TYPE_UNREGISTERED,
}
HEADER_TEXT_FIELDS: tuple[str, ...] = (
    "invoice_date",
    "buyer_ntn_cnic",
    "buyer_business_name",
    "buyer_province",
    "buyer_address",
    "invoice_ref_no",
    "scenario_id",
)
ITEM_FIELDS: tuple[str, ...] = tuple(name for name, _ in payload.ITEM_FIELDS)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def invoice_to_proto(normalised: Mapping[str, Any], erp_reference: str) -> invoice_pb2.Invoice:
    """Build the protobuf ``Invoice`` for a normalised invoice.

    An invoice type or registration type that is not one of FBR's exact texts ("Sale
    Invoice", "Debit Note"; "Registered", "Unregistered") becomes the UNSPECIFIED enum value,
    which the hub rejects with FBR code 0003 or 0012. ``seller_*`` fields are ignored.

    Args:
        normalised: header fields as strings plus ``items``, a list of item dicts.
        erp_reference: the ERP's own reference for the invoice.

    Returns:
        The message to submit.
    """
    message = invoice_pb2.Invoice(
        erp_reference=erp_reference,
        invoice_type=INVOICE_TYPES.get(
            _text(normalised.get("invoice_type")), invoice_pb2.INVOICE_TYPE_UNSPECIFIED
        ),
        buyer_registration_type=REGISTRATION_TYPES.get(
            _text(normalised.get("buyer_registration_type")),
            invoice_pb2.BUYER_REGISTRATION_TYPE_UNSPECIFIED,
        ),
    )
    for name in HEADER_TEXT_FIELDS:
        setattr(message, name, _text(normalised.get(name)))
    for item in normalised.get("items") or ():
        line = message.items.add()
        for name in ITEM_FIELDS:
            setattr(line, name, _text(item.get(name)))
    return message
