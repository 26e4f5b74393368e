"""The rules' vocabulary: a :class:`Violation`, the :class:`ValidationContext`, a :class:`Rule`,
and :class:`Line`, one invoice line with what several rules need looked up once."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from clients.fbr import reference
from clients.fbr.payload import ITEM_NUMBER_FIELDS, NormalisedInvoice, parse_decimal
from clients.fbr.refdata.snapshot import ReferenceData, seed_reference_data
from clients.fbr.reference import RateComponents, SaleType


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: where (our field path), FBR's code for it, and what to send instead."""

    path: str
    fbr_error_code: str
    message: str


OriginalInvoiceLookup = Callable[[str], "datetime.date | None"]
"""FBR invoice number -> the original invoice's date, or None if no such accepted invoice."""


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What the rules need besides the invoice (every field after ``environment`` optional)."""

    today: datetime.date
    """Today in Pakistan, for the future-date rule (injectable for tests)."""
    environment: str
    """``"sandbox"`` or ``"production"``."""
    seller_ntn_cnic: str = ""
    """The FBR token owner's NTN/CNIC; when given, the invoice's seller must equal it."""
    reference_data: ReferenceData = field(default_factory=seed_reference_data)
    """FBR's reference lists (default: the seed shipped with the package)."""
    original_invoice: OriginalInvoiceLookup | None = None
    """Looks up a debit note's original by FBR number (0057, 0029, 0034); None: not checked."""
    assigned_scenarios: frozenset[str] | None = None
    """Sandbox scenarios assigned to the seller (0203); None: all of SN001-SN028."""


Check = Callable[[NormalisedInvoice, ValidationContext], Iterable[Violation]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A local rule and the FBR error code it stands for."""

    rule_id: str
    fbr_error_code: str
    summary: str
    check: Check


Invoice = NormalisedInvoice
Context = ValidationContext
Violations = Sequence[Violation]
OK: tuple[Violation, ...] = ()
DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# A non-negative decimal text; groups: fraction digits (two spellings), exponent.
_AMOUNT = re.compile(r"(?:\d+(?:\.(\d*))?|\.(\d+))([eE][+-]?\d+)?", re.ASCII)
# The common case, checked first: at most 2 (quantity 4) significant decimals.
_PLAIN = {
    2: re.compile(r"\d+(?:\.\d{0,2}0*)?", re.ASCII),
    4: re.compile(r"\d+(?:\.\d{0,4}0*)?", re.ASCII),
}
_DECIMALS = tuple((ours, 4 if ours == "quantity" else 2) for ours, _ in ITEM_NUMBER_FIELDS)
_TOLERANCE_FLOOR = Decimal("1.00")
_TOLERANCE_FRACTION = Decimal("0.005")


def parse_date(text: str) -> datetime.date | None:
    """A ``YYYY-MM-DD`` date, or None if the text is not one."""
    if not DATE.fullmatch(text):
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


def fraction_digits(text: str) -> int | None:
    """Significant decimal places of a non-negative amount text; ``None`` if not one."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None
    if match[3] is None:
        return len((match[1] or match[2] or "").rstrip("0"))
    exponent = Decimal(text).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def close_enough(actual: Decimal, expected: Decimal) -> bool:
    """The tax tolerance: within Rs 1.00 or 0.5% of the expected amount, whichever is more."""
    return abs(actual - expected) <= max(_TOLERANCE_FLOOR, abs(expected) * _TOLERANCE_FRACTION)


def one(path: str, code: str, message: str) -> tuple[Violation]:
    """A single violation."""
    return (Violation(path, code, message),)


def reference_date(invoice: Invoice, context: Context) -> datetime.date:
    """The date reference data is read for: the invoice date, else today."""
    return parse_date(invoice.get("invoice_date", "")) or context.today


class Line:
    """One invoice line with what several rules need, looked up once."""

    __slots__ = (
        "bad_numbers",
        "context",
        "index",
        "invoice",
        "item",
        "on",
        "rate",
        "rate_id",
        "rates",
        "sale_type",
    )

    def __init__(
        self,
        item: Mapping[str, str],
        index: int,
        invoice: Invoice,
        context: Context,
        on: datetime.date,
    ) -> None:
        self.item = item
        self.index = index
        self.invoice = invoice
        self.context = context
        self.on = on
        sale_type_name = item.get("sale_type", "")
        self.sale_type: SaleType | None = reference.sale_type(sale_type_name)
        """How the sale type is taxed (hub knowledge); None for one the hub cannot judge."""
        self.rates: Mapping[str, int] | None = context.reference_data.rates(
            sale_type_name, invoice.get("seller_province", ""), on
        )
        """Rate text -> FBR rate id allowed for the sale type; None when not known."""
        rate = item.get("rate", "")
        self.rate_id: int | None = self.rates.get(rate) if self.rates is not None else None
        self.rate: RateComponents | None = None
        """The parsed rate, only if it is valid for the sale type (else 0013/0046 speak)."""
        if self.sale_type is not None and (self.rates is None or self.rate_id is not None):
            self.rate = reference.rate_components(rate)
        # One scan serves both number rules (0300, 0302): (field, code) of each bad number.
        self.bad_numbers: list[tuple[str, str]] = []
        for name, limit in _DECIMALS:
            text = item.get(name, "")
            if text and text != "0" and not _PLAIN[limit].fullmatch(text):
                digits = fraction_digits(text)
                if digits is None:
                    self.bad_numbers.append((name, "0300"))
                elif digits > limit:
                    self.bad_numbers.append((name, "0302"))

    def violation(self, name: str, code: str, message: str) -> tuple[Violation]:
        """A violation at ``items[<index>].<name>``."""
        return (Violation(f"items[{self.index}].{name}", code, message),)

    def amount(self, name: str) -> Decimal | None:
        """The line field as a decimal; None if empty or not a number."""
        return parse_decimal(self.item.get(name, ""))


ItemCheck = Callable[[Line], Violations]


def header_field(name: str, ok: Callable[[Any], object], code: str, message: str) -> Check:
    """A check that the header field ``name`` satisfies ``ok``."""

    def check(invoice: Invoice, _: Context) -> Violations:
        return OK if ok(invoice.get(name, "")) else one(name, code, message)

    return check


def item_field(name: str, ok: Callable[[str], object], code: str, message: str) -> ItemCheck:
    """A check that the line field ``name`` satisfies ``ok``."""

    def check(line: Line) -> Violations:
        return OK if ok(line.item.get(name, "")) else line.violation(name, code, message)

    return check
