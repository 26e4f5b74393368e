"""The rules' vocabulary: a :class:`Violation`, the :class:`ValidationContext`, a :class:`Rule`,
and :class:`Line`, one invoice line with what several rules need looked up once."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from clients.fbr import numbers, reference
from clients.fbr.numbers import NumberBound
from clients.fbr.payload import ITEM_NUMBER_BOUNDS, NormalisedInvoice
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
    judged_products: dict[tuple[Any, ...], JudgedProduct] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Memo of ``validate_invoice``: the products it has judged under this context."""


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


# The common case, checked first with one regex in C: a plain number within its bound.
def _plain(bound: NumberBound) -> re.Pattern[str]:
    whole, fraction = bound.integer_digits, bound.fraction_digits
    return re.compile(rf"0*\d{{1,{whole}}}(?:\.\d{{0,{fraction}}}0*)?", re.ASCII)


_BOUNDS = tuple((ours, bound, _plain(bound)) for ours, bound in ITEM_NUMBER_BOUNDS.items())
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


def number_problem(name: str, text: str, bound: NumberBound) -> tuple[str, str, str] | None:
    """What is wrong with the number ``text`` of line field ``name``, if anything.

    Returns:
        ``(field, FBR code, message)``: 0300 for a text that is not a plain non-negative
        number or has more integer digits than the bound, 0302 for too many decimals;
        None for a number within its bound. The text is measured, never evaluated.
    """
    found = numbers.digits(text)
    if found is None:
        message = f"{name} must be a plain number, 0 or more (no sign, text or separators)."
        return (name, "0300", message)
    if found[0] > bound.integer_digits:
        message = f"{name} is too large: at most {bound.integer_digits} digits before the point."
        return (name, "0300", message)
    if found[1] > bound.fraction_digits:
        message = f"{name} has too many decimal places: round it to {bound.fraction_digits}."
        return (name, "0302", message)
    return None


def close_enough(actual: Decimal, expected: Decimal) -> bool:
    """The tax tolerance: within Rs 1.00 or 0.5% of the expected amount, whichever is more."""
    difference = abs(actual - expected)
    return difference <= _TOLERANCE_FLOOR or difference <= abs(expected) * _TOLERANCE_FRACTION


def one(path: str, code: str, message: str) -> tuple[Violation]:
    """A single violation."""
    return (Violation(path, code, message),)


def reference_date(invoice: Invoice, context: Context) -> datetime.date:
    """The date reference data is read for: the invoice date, else today."""
    return parse_date(invoice.get("invoice_date", "")) or context.today


PRODUCT_FIELDS = ("sale_type", "hs_code", "uom", "rate", "sro_schedule_no", "sro_item_serial_no")
"""The line fields that say what a line sells and how it is taxed (see :class:`Product`)."""


@dataclass(frozen=True, slots=True)
class Product:
    """What the rules look up about a line's product: the same for all lines of the product.

    Two lines are the same product when their :data:`PRODUCT_FIELDS` are equal and their
    invoices have the same scenario, seller province and reference date.
    """

    sale_type: SaleType | None
    """How the sale type is taxed (hub knowledge); None for one the hub cannot judge."""
    rates: Mapping[str, int] | None
    """Rate text -> FBR rate id allowed for the sale type; None when not known."""
    rate_id: int | None
    """The FBR rate id of the line's rate, if the rate is allowed for the sale type."""
    rate: RateComponents | None
    """The parsed rate, only if it is valid for the sale type (else 0013/0046 speak)."""

    @classmethod
    def look_up(
        cls, item: Mapping[str, str], invoice: Invoice, context: Context, on: datetime.date
    ) -> Product:
        """The product of line ``item`` of ``invoice``, reference data read for ``on``."""
        sale_type_name = item.get("sale_type", "")
        sale_type = reference.sale_type(sale_type_name)
        rates = context.reference_data.rates(sale_type_name, invoice.get("seller_province", ""), on)
        rate = item.get("rate", "")
        rate_id = rates.get(rate) if rates is not None else None
        components = None
        if sale_type is not None and (rates is None or rate_id is not None):
            components = reference.rate_components(rate)
        return cls(sale_type, rates, rate_id, components)


@dataclass(frozen=True, slots=True)
class JudgedProduct:
    """A product and what the product rules found wrong with it (paths are field names)."""

    product: Product
    violations: tuple[Violation, ...]


class Line:
    """One invoice line with what several rules need, looked up once."""

    __slots__ = (
        "bad_numbers",
        "context",
        "index",
        "invoice",
        "item",
        "on",
        "product",
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
        product: Product | None = None,
    ) -> None:
        """The line ``item`` at ``index`` of ``invoice``.

        Args:
            product: the line's product, if already looked up (else it is looked up here).
        """
        self.item = item
        self.index = index
        self.invoice = invoice
        self.context = context
        self.on = on
        self.product = product or Product.look_up(item, invoice, context, on)
        # The product's lookups, under the names the rules use.
        self.sale_type = self.product.sale_type
        self.rates = self.product.rates
        self.rate_id = self.product.rate_id
        self.rate = self.product.rate
        # One scan serves both number rules (0300, 0302): (field, code, message) of each bad
        # number; a number in it is never evaluated (see amount()).
        self.bad_numbers: list[tuple[str, str, str]] = []
        for name, bound, plain in _BOUNDS:
            text = item.get(name, "")
            if text and text != "0" and not plain.fullmatch(text):
                problem = number_problem(name, text, bound)
                if problem is not None:
                    self.bad_numbers.append(problem)

    def violation(self, name: str, code: str, message: str) -> tuple[Violation]:
        """A violation at ``items[<index>].<name>``."""
        return (Violation(f"items[{self.index}].{name}", code, message),)

    def amount(self, name: str) -> Decimal | None:
        """The line field as a decimal; None if empty, not a number or out of its bound.

        The scan in ``__init__`` has measured every number field already: one it did not
        list in ``bad_numbers`` is within its bound and safe to evaluate.
        """
        text = self.item.get(name, "")
        if not text or (self.bad_numbers and any(bad[0] == name for bad in self.bad_numbers)):
            return None
        return Decimal(text)


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
