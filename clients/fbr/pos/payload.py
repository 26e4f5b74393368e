"""The IMS (POS fiscal) request body and its mapping to the hub's field names.

Like the DI channel, the hub works with a *normalised* POS invoice: a dict of snake_case
string fields plus ``items``, a list of such dicts. :func:`to_ims_json` builds FBR's body from
it and :func:`from_ims_json` reads one back, so one rule set (:mod:`clients.fbr.pos.rules`)
judges both what an ERP sends and what the simulator receives.

Fields are listed in docs/fbr-coverage.md §6.2. Choices:

- **Header totals are computed** from the lines when the ERP leaves them empty (FBR wants
  them equal to the sums [KIT-IMS §8]); when given they must equal the sums.
- **Numbers go as JSON numbers** (``double`` in the spec), ``POSID``, ``PaymentMode`` and
  ``InvoiceType`` as integers, ``TaxRate`` as a number such as ``17`` (never ``"17%"``).
- ``InvoiceNumber`` is sent as ``""``: FBR fills it in [T3].
- **The Re 1 POS service fee** (SRO 1279(I)/2021) is *not* in the body: the documented payload
  has no field for it, and adding it to ``TotalBillAmount`` would break "totals = item sums".
  It is a separate charge on the customer's bill: :func:`receipt_totals` adds it to what the
  customer pays, as the ERPNext "FBR POS Service Fee" row and Odoo's POS module do
  (docs/fbr-coverage.md §6.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clients.fbr.numbers import POS_NUMBER, NumberBound, bounded_decimal, json_number
from clients.fbr.payload import parse_decimal

NormalisedPosInvoice = dict[str, Any]

# (our field, IMS key)
HEADER_TEXT_FIELDS: tuple[tuple[str, str], ...] = (
    ("usin", "USIN"),
    ("ref_usin", "RefUSIN"),
    ("date_time", "DateTime"),
    ("buyer_name", "BuyerName"),
    ("buyer_ntn", "BuyerNTN"),
    ("buyer_cnic", "BuyerCNIC"),
    ("buyer_phone_number", "BuyerPhoneNumber"),
)
HEADER_INT_FIELDS: tuple[tuple[str, str], ...] = (
    ("pos_id", "POSID"),
    ("payment_mode", "PaymentMode"),
    ("invoice_type", "InvoiceType"),
)
# Header totals and the item field each one sums.
HEADER_TOTALS: tuple[tuple[str, str, str], ...] = (
    ("total_sale_value", "TotalSaleValue", "sale_value"),
    ("total_tax_charged", "TotalTaxCharged", "tax_charged"),
    ("discount", "Discount", "discount"),
    ("further_tax", "FurtherTax", "further_tax"),
    ("total_bill_amount", "TotalBillAmount", "total_amount"),
    ("total_quantity", "TotalQuantity", "quantity"),
)
ITEM_TEXT_FIELDS: tuple[tuple[str, str], ...] = (
    ("item_code", "ItemCode"),
    ("item_name", "ItemName"),
    ("pct_code", "PCTCode"),
    ("ref_usin", "RefUSIN"),
)
ITEM_NUMBER_FIELDS: tuple[tuple[str, str], ...] = (
    ("quantity", "Quantity"),
    ("tax_rate", "TaxRate"),
    ("sale_value", "SaleValue"),
    ("discount", "Discount"),
    ("further_tax", "FurtherTax"),
    ("tax_charged", "TaxCharged"),
    ("total_amount", "TotalAmount"),
)
ITEM_INT_FIELDS: tuple[tuple[str, str], ...] = (("invoice_type", "InvoiceType"),)

PAYMENT_MODES = {
    1: "Cash",
    2: "Card",
    3: "Gift Voucher",
    4: "Loyalty Card",
    5: "Mixed",
    6: "Cheque",
}
INVOICE_TYPES = {1: "New", 2: "Debit", 3: "Credit"}
ITEM_INVOICE_TYPES = {1: "New", 3: "Credit", 11: "3rd Schedule New", 12: "3rd Schedule Credit"}
POS_SERVICE_FEE = Decimal("1.00")
"""Re 1 per invoice (SRO 1279(I)/2021), collected from the customer, outside the payload."""
_CENT = Decimal("0.01")


def item_sum(invoice: NormalisedPosInvoice, field: str) -> Decimal | None:
    """The sum of an item field over the lines; None if a value is not a number in bound."""
    total = Decimal(0)
    for item in invoice.get("items") or ():
        text = item.get(field, "")
        if not text:
            continue
        value = bounded_decimal(text, POS_NUMBER)
        if value is None:
            return None
        total += value
    return total


def with_totals(invoice: NormalisedPosInvoice) -> NormalisedPosInvoice:
    """A copy with every empty header total filled with the sum of its item field."""
    filled = dict(invoice)
    for ours, _, item_field in HEADER_TOTALS:
        if not filled.get(ours):
            total = item_sum(invoice, item_field)
            if total is not None:
                filled[ours] = format(
                    total.quantize(_CENT) if ours != "total_quantity" else total, "f"
                )
    return filled


# POSID is a bigint [T3]; PaymentMode and InvoiceType are small codes.
_INTEGER = NumberBound(18, 0)


def _number(text: str, bound: NumberBound = POS_NUMBER) -> int | float | str:
    return json_number(text, bound)


def to_ims_json(invoice: NormalisedPosInvoice) -> dict[str, Any]:
    """Build the IMS ``PostData`` body (totals computed where not given).

    Raises:
        UnsendableNumber: a number outside its bound, which the POS rules refuse: never
            raised for an invoice that passed validation.
    """
    full = with_totals(invoice)
    body: dict[str, Any] = {"InvoiceNumber": ""}
    for ours, theirs in HEADER_INT_FIELDS:
        body[theirs] = _number(full.get(ours, ""), _INTEGER)
    for ours, theirs in HEADER_TEXT_FIELDS:
        body[theirs] = full.get(ours, "")
    for ours, theirs, _ in HEADER_TOTALS:
        body[theirs] = _number(full.get(ours, "") or "0")
    items: list[dict[str, Any]] = []
    for item in full.get("items") or ():
        out: dict[str, Any] = {}
        for ours, theirs in ITEM_TEXT_FIELDS:
            out[theirs] = item.get(ours, "")
        for ours, theirs in ITEM_NUMBER_FIELDS:
            out[theirs] = _number(item.get(ours, "") or "0")
        for ours, theirs in ITEM_INT_FIELDS:
            out[theirs] = _number(item.get(ours, ""), _INTEGER)
        items.append(out)
    body["Items"] = items
    return body


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    return str(value)


def from_ims_json(body: dict[str, Any]) -> NormalisedPosInvoice:
    """Normalise an IMS body into the hub's form (every value a string)."""
    invoice: NormalisedPosInvoice = {}
    for ours, theirs in HEADER_INT_FIELDS + HEADER_TEXT_FIELDS:
        invoice[ours] = _text(body.get(theirs))
    for ours, theirs, _ in HEADER_TOTALS:
        invoice[ours] = _text(body.get(theirs))
    items: list[dict[str, str]] = []
    raw_items = body.get("Items")
    for raw in raw_items if isinstance(raw_items, list) else ():
        fields = raw if isinstance(raw, dict) else {}
        items.append(
            {
                ours: _text(fields.get(theirs))
                for ours, theirs in ITEM_TEXT_FIELDS + ITEM_NUMBER_FIELDS + ITEM_INT_FIELDS
            }
        )
    invoice["items"] = items
    return invoice


@dataclass(frozen=True, slots=True)
class ReceiptTotals:
    """What the printed POS receipt shows at the bottom (SRO 1006(I)/2021; fbr-coverage §6.6)."""

    sale_value: Decimal
    tax: Decimal
    discount: Decimal
    further_tax: Decimal
    bill_amount: Decimal
    """``TotalBillAmount`` as reported to FBR."""
    service_fee: Decimal
    """The Re 1 POS service fee, a separate charge."""
    total_payable: Decimal
    """What the customer pays: the bill amount plus the service fee."""


def receipt_totals(invoice: NormalisedPosInvoice) -> ReceiptTotals:
    """The receipt totals of a (valid) POS invoice, the Re 1 fee added as a separate charge."""
    full = with_totals(invoice)

    def amount(field: str) -> Decimal:
        return parse_decimal(full.get(field, "")) or Decimal(0)

    bill = amount("total_bill_amount")
    return ReceiptTotals(
        sale_value=amount("total_sale_value"),
        tax=amount("total_tax_charged"),
        discount=amount("discount"),
        further_tax=amount("further_tax"),
        bill_amount=bill,
        service_fee=POS_SERVICE_FEE,
        total_payable=bill + POS_SERVICE_FEE,
    )
