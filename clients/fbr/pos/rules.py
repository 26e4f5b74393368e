"""Local rules for IMS (POS) invoices (docs/fbr-coverage.md §6.2-6.4).

Shared by the hub and the simulator's POS endpoints, like the DI rule table. FBR publishes no
IMS error catalogue beyond ``100`` (success) and ``102`` ("Invalid data received") [KIT-IMS]
[LX §12], so every violation carries ``102``, the code FBR would answer; the *path* and the
message say what is wrong. Paths use our field names (``items[0].pct_code``).

Choices:

- ``PCTCode``: 1-8 digits, no dot [T3] [KIT-IMS]. ``BuyerCNIC``: 13 digits, no dashes.
  ``BuyerNTN``: 7 digits with an optional ``-`` check digit (``1234567-8``, varchar(9)).
- Item types must fit the header (*inference*, FBR lists no item "Debit"): a New (1) or Debit
  (2) invoice has items 1 or 11; a Credit (3) has items 3 or 12 and a ``RefUSIN``; a Debit too.
- Arithmetic for items 1 and 3: ``TaxCharged ≈ SaleValue × TaxRate / 100`` and
  ``TotalAmount ≈ SaleValue + TaxCharged + FurtherTax`` within the DI tolerance (Rs 1 or
  0.5%); the spec's sample (1298 + 221 = 1519, discount apart) fits. 3rd Schedule items
  (11, 12) are taxed on a retail price the payload does not carry: not checked.
- Header totals must equal the item sums to the paisa [KIT-IMS §8].
- ``USIN`` unique per POS [KIT-IMS §10]: checked through ``PosValidationContext.usin_used``
  when the caller supplies it. The hub does not need to: its USIN is the ``erp_reference``,
  unique per tenant, and a tenant has one POSID. The simulator counts reuse instead (FBR's
  behaviour is unknown).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from clients.fbr.numbers import POS_NUMBER, bounded_decimal, within
from clients.fbr.payload import parse_decimal
from clients.fbr.pos.payload import (
    HEADER_TOTALS,
    ITEM_INVOICE_TYPES,
    ITEM_NUMBER_FIELDS,
    PAYMENT_MODES,
    NormalisedPosInvoice,
    item_sum,
)
from clients.fbr.rules import Violation
from clients.fbr.rules.context import close_enough

POS_REJECTED = "102"
_DIGITS = re.compile(r"\d+", re.ASCII)
_PCT = re.compile(r"\d{1,8}", re.ASCII)
_CNIC = re.compile(r"\d{13}", re.ASCII)
_NTN = re.compile(r"\d{7}(?:-\d)?", re.ASCII)
_DATE_TIME = "%Y-%m-%d %H:%M:%S"
_HUNDRED = Decimal(100)
_CREDIT_ITEMS = frozenset({"3", "12"})
_NEW_ITEMS = frozenset({"1", "11"})


@dataclass(frozen=True, slots=True)
class PosValidationContext:
    """What the POS rules need besides the invoice."""

    usin_used: Callable[[str, str], bool] | None = None
    """(POSID, USIN) -> whether that USIN was already fiscalised; None: not checked."""


def _bad(path: str, message: str) -> Violation:
    return Violation(path, POS_REJECTED, message)


def _header(invoice: NormalisedPosInvoice, context: PosValidationContext) -> list[Violation]:
    found: list[Violation] = []
    pos_id, usin = invoice.get("pos_id", ""), invoice.get("usin", "")
    if not _DIGITS.fullmatch(pos_id):
        found.append(
            _bad(
                "pos_id",
                "POSID is missing or not a number: send the POS "
                "registration number FBR issued (digits only).",
            )
        )
    if not usin.strip() or len(usin) > 50:
        found.append(
            _bad(
                "usin",
                "USIN is missing or longer than 50 characters: send the "
                "POS's own unique invoice number.",
            )
        )
    elif context.usin_used is not None and context.usin_used(pos_id, usin):
        found.append(
            _bad(
                "usin",
                "This USIN was already fiscalised for this POS: a USIN is "
                "never reused; give the sale a new one.",
            )
        )
    try:
        dt.datetime.strptime(invoice.get("date_time", ""), _DATE_TIME)
    except ValueError:
        found.append(
            _bad("date_time", "DateTime must be yyyy-MM-dd HH:mm:ss, e.g. 2025-05-13 12:01:41.")
        )
    if not (
        invoice.get("payment_mode", "").isdigit() and int(invoice["payment_mode"]) in PAYMENT_MODES
    ):
        modes = ", ".join(f"{k} {v}" for k, v in PAYMENT_MODES.items())
        found.append(_bad("payment_mode", f"PaymentMode must be one of {modes}."))
    invoice_type = invoice.get("invoice_type", "")
    if invoice_type not in {"1", "2", "3"}:
        found.append(_bad("invoice_type", "InvoiceType must be 1 (New), 2 (Debit) or 3 (Credit)."))
    elif invoice_type != "1" and not invoice.get("ref_usin", "").strip():
        found.append(
            _bad(
                "ref_usin",
                "A debit or credit invoice must give, in RefUSIN, the USIN of the original sale.",
            )
        )
    cnic = invoice.get("buyer_cnic", "")
    if cnic and not _CNIC.fullmatch(cnic):
        found.append(_bad("buyer_cnic", "BuyerCNIC must be 13 digits, without dashes."))
    ntn = invoice.get("buyer_ntn", "")
    if ntn and not _NTN.fullmatch(ntn):
        found.append(
            _bad(
                "buyer_ntn",
                "BuyerNTN must be 7 digits, optionally with its check "
                "digit after a dash (1234567-8).",
            )
        )
    if not invoice.get("items"):
        found.append(_bad("items", "The invoice has no items: send at least one."))
    return found


def _item(index: int, item: Mapping[str, str], invoice_type: str) -> list[Violation]:
    found: list[Violation] = []
    at = f"items[{index}]."
    if not item.get("item_code", "").strip():
        found.append(_bad(at + "item_code", "ItemCode is missing: send the POS's item code."))
    if not item.get("item_name", "").strip():
        found.append(_bad(at + "item_name", "ItemName is missing: send the item's name."))
    if not _PCT.fullmatch(item.get("pct_code", "")):
        found.append(
            _bad(
                at + "pct_code",
                "PCTCode must be the item's customs tariff code "
                "in at most 8 digits, without dots (84145100).",
            )
        )
    amounts: dict[str, Decimal] = {}
    for name, _ in ITEM_NUMBER_FIELDS:
        text = item.get(name, "") or "0"
        value = bounded_decimal(text, POS_NUMBER)
        if value is not None:
            amounts[name] = value
        elif within(text, POS_NUMBER) is None:
            hint = " (a number such as 17, not 17%)" if name == "tax_rate" else ""
            found.append(_bad(at + name, f"{name} must be a number, 0 or more{hint}."))
        else:
            found.append(_bad(at + name, _out_of_bound(name)))
    if amounts.get("quantity") == 0:
        found.append(_bad(at + "quantity", "Quantity must be more than 0."))
    item_type = item.get("invoice_type", "")
    if item_type not in {str(k) for k in ITEM_INVOICE_TYPES}:
        kinds = ", ".join(f"{k} ({v})" for k, v in ITEM_INVOICE_TYPES.items())
        found.append(_bad(at + "invoice_type", f"The item InvoiceType must be one of {kinds}."))
    elif invoice_type in {"1", "2", "3"}:
        credit = invoice_type == "3"
        if credit != (item_type in _CREDIT_ITEMS):
            want = "3 or 12" if credit else "1 or 11"
            found.append(
                _bad(
                    at + "invoice_type",
                    f"Items of this invoice must have InvoiceType {want}, like the invoice itself.",
                )
            )
    if len(amounts) == 7 and item_type in {"1", "3"}:
        expected = amounts["sale_value"] * amounts["tax_rate"] / _HUNDRED
        if not close_enough(amounts["tax_charged"], expected):
            found.append(
                _bad(
                    at + "tax_charged",
                    f"TaxCharged does not match SaleValue x "
                    f"TaxRate (expected about {expected:.2f}).",
                )
            )
        total = amounts["sale_value"] + amounts["tax_charged"] + amounts["further_tax"]
        if not close_enough(amounts["total_amount"], total):
            found.append(
                _bad(
                    at + "total_amount",
                    f"TotalAmount must be SaleValue + TaxCharged + FurtherTax ({total:.2f}).",
                )
            )
    return found


def _out_of_bound(name: str) -> str:
    return (
        f"{name} is out of range: at most {POS_NUMBER.integer_digits} digits before the point "
        f"and {POS_NUMBER.fraction_digits} after."
    )


def validate_pos_invoice(
    invoice: NormalisedPosInvoice, context: PosValidationContext | None = None
) -> list[Violation]:
    """Every POS rule the invoice breaks: header first, then items, then the header totals."""
    context = context or PosValidationContext()
    found = _header(invoice, context)
    invoice_type = invoice.get("invoice_type", "")
    for index, item in enumerate(invoice.get("items") or ()):
        found.extend(_item(index, item, invoice_type))
    for ours, theirs, item_field in HEADER_TOTALS:
        given, total = invoice.get(ours, ""), item_sum(invoice, item_field)
        if total is not None and not within(format(total, "f"), POS_NUMBER):
            # The hub sends the sum when the ERP gives none: it must fit the bound too.
            found.append(_bad(ours, _out_of_bound(theirs)))
            continue
        if not given:
            continue  # the hub fills it from the items (to_ims_json)
        value = parse_decimal(given)
        if total is not None and (value is None or abs(value - total) >= Decimal("0.01")):
            found.append(_bad(ours, f"{theirs} must be the sum of the items' values ({total})."))
    return found
