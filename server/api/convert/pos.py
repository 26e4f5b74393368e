"""Pure conversions between ``fbrhub.v1.PosInvoice`` and the normalised POS invoice."""

from __future__ import annotations

from typing import Any

from clients.fbr.pos.payload import NormalisedPosInvoice
from fbrhub.v1 import invoice_pb2

_HEADER_TEXT = (
    "date_time",
    "ref_usin",
    "buyer_name",
    "buyer_ntn",
    "buyer_cnic",
    "buyer_phone_number",
)
_ITEM_TEXT = (
    "item_code",
    "item_name",
    "pct_code",
    "quantity",
    "tax_rate",
    "sale_value",
    "discount",
    "further_tax",
    "tax_charged",
    "total_amount",
    "ref_usin",
)


def _code(value: int) -> str:
    # The enum values are FBR's own codes; 0 (unspecified) becomes "" (not given).
    return str(value) if value else ""


def pos_to_domain(message: invoice_pb2.PosInvoice) -> NormalisedPosInvoice:
    """A protobuf POS invoice -> the normalised POS form (its USIN is the ERP reference)."""
    invoice: NormalisedPosInvoice = {
        "payment_mode": _code(message.payment_mode),
        "invoice_type": _code(message.invoice_type),
    }
    for name in _HEADER_TEXT:
        invoice[name] = getattr(message, name)
    invoice["items"] = [
        {
            **{name: getattr(item, name) for name in _ITEM_TEXT},
            "invoice_type": _code(item.item_type),
        }
        for item in message.items
    ]
    return invoice


def _enum(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def pos_from_domain(invoice: dict[str, Any]) -> invoice_pb2.PosInvoice:
    """A stored normalised POS invoice -> protobuf (totals and POSID are the hub's, left out)."""
    return invoice_pb2.PosInvoice(
        payment_mode=_enum(invoice.get("payment_mode")),  # type: ignore[arg-type]
        invoice_type=_enum(invoice.get("invoice_type")),  # type: ignore[arg-type]
        items=[
            invoice_pb2.PosItem(
                item_type=_enum(item.get("invoice_type")),  # type: ignore[arg-type]
                **{name: item.get(name, "") for name in _ITEM_TEXT},
            )
            for item in invoice.get("items", [])
        ],
        **{name: invoice.get(name, "") for name in _HEADER_TEXT},
    )
