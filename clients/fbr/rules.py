"""The one table of FBR DI rules, shared by the hub's validator and the FBR simulator.

Each :class:`Rule` names the FBR error code FBR itself would answer with (research/fbr-api.md
§1.10) and checks a *normalised* invoice (see :mod:`clients.fbr.payload`). The hub runs the
table before sending, so an invoice FBR would refuse is refused locally with the same code;
the simulator runs the very same table to answer like FBR.

Decisions the sources leave open (research/fbr-api.md §4, §5):

- **Tax tolerance.** FBR does not document how closely tax must match value × rate (0102,
  0103, 0104, 0105). A line passes when ``|tax - expected| <= max(Rs 1.00, 0.5% of expected)``.
  That accepts every PRAL sample and ERPs that round per unit, and still catches a wrong rate.
  Refusing an invoice FBR would accept blocks a legal sale, so the rule errs on the lenient side.
- **Empty numbers.** ``quantity`` (0098), ``value_sales_excluding_st`` (0021) and
  ``sales_tax_applicable`` (0018) must be given. An empty ``total_values``,
  ``fixed_notified_value_or_retail_price`` (except for 3rd Schedule goods, 0090) or
  ``sales_tax_withheld_at_source`` means 0, which is what the hub sends.
- **Extra tax (0091).** For reduced-rate, exempt and zero-rated sale types ``extra_tax`` must
  be empty, not "0" [KIT-DI §7.2]; PRAL's SN007 sample sends 0 regardless.
- **SRO number (0077).** [ERR] asks for it "where the rate is not 18%", but PRAL's own samples
  send none for 5%, 8% and 17% sale types. It is required for the sale types whose PRAL
  sample carries one (``reference.SaleType.requires_sro``).
- **Ids.** A seller id that is not 7 or 13 digits is 0108; a well-formed id that is not the
  token owner's is 0401. A buyer id may also have 9 digits, as [SPEC] 0002 allows.
- **Scenario id.** There is no documented code for a malformed scenario id or one sent in
  production; both use 0203 (scenario not assigned). A scenario's sale type is checked (0204).
- **No items** is reported as 0021 (line values missing) at path ``items``.
- **Not checked:** that the HS code or buyer exists at FBR (0052, 0053) and rules that need the
  original invoice (0029, 0034): they need FBR's data. The practitioner rule that further and
  extra tax apply only to unregistered buyers is not enforced: PRAL's own samples break it.

Paths are in our field names, relative to the invoice, with 0-based item indexes
(``items[0].rate``). Messages never repeat an id, name or address, only codes and field names.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clients.fbr import reference
from clients.fbr.payload import (
    INVOICE_TYPE_DEBIT_NOTE,
    INVOICE_TYPE_SALE,
    ITEM_NUMBER_FIELDS,
    REGISTERED,
    UNREGISTERED,
    NormalisedInvoice,
    parse_decimal,
)
from clients.fbr.reference import RateComponents, SaleType, SaleTypeCategory


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: where (our field path), FBR's code for it, and what to send instead."""

    path: str
    fbr_error_code: str
    message: str


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What the rules need besides the invoice."""

    today: datetime.date
    """Today in Pakistan, for the future-date rule (injectable for tests)."""
    environment: str
    """``"sandbox"`` or ``"production"``."""
    seller_ntn_cnic: str = ""
    """The FBR token owner's NTN/CNIC; when given, the invoice's seller must equal it."""


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
_OK: tuple[Violation, ...] = ()
_PARTY_ID = re.compile(r"\d{7}|\d{13}", re.ASCII)
_BUYER_ID = re.compile(r"\d{7}|\d{9}|\d{13}", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_SCENARIO_ID = re.compile(r"SN0(?:0[1-9]|1[0-9]|2[0-8])", re.ASCII)
_HS_CODE = re.compile(r"\d{4}\.\d{4}", re.ASCII)
# A non-negative decimal text; groups: fraction digits (two spellings), exponent.
_AMOUNT = re.compile(r"(?:\d+(?:\.(\d*))?|\.(\d+))([eE][+-]?\d+)?", re.ASCII)
# The common case, checked first: at most 2 (quantity 4) significant decimals.
_PLAIN = {
    2: re.compile(r"\d+(?:\.\d{0,2}0*)?", re.ASCII),
    4: re.compile(r"\d+(?:\.\d{0,4}0*)?", re.ASCII),
}
_DECIMALS = tuple((ours, 4 if ours == "quantity" else 2) for ours, _ in ITEM_NUMBER_FIELDS)
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_TOLERANCE_FLOOR = Decimal("1.00")
_TOLERANCE_FRACTION = Decimal("0.005")
# A tuple, not a set: enum members hash in Python code, and `in` on a tuple tests identity.
_NO_EXTRA_TAX = (SaleTypeCategory.REDUCED, SaleTypeCategory.EXEMPT, SaleTypeCategory.ZERO_RATED)
_THIRD = SaleTypeCategory.THIRD_SCHEDULE
_PROVINCE_HINT = f"Use one of: {', '.join(reference.PROVINCES)} (a province, never a city)."
_ID_HINT = "digits only, without dashes or spaces"


class _Line:
    """One invoice line with what several rules need, looked up once."""

    __slots__ = ("bad_numbers", "context", "index", "invoice", "item", "rate", "sale_type")

    def __init__(
        self, item: Mapping[str, str], index: int, invoice: Invoice, context: Context
    ) -> None:
        self.item = item
        self.index = index
        self.invoice = invoice
        self.context = context
        self.sale_type: SaleType | None = reference.sale_type(item.get("sale_type", ""))
        self.rate: RateComponents | None = None
        """The parsed rate, only if it is valid for the sale type (else 0013/0046 speak)."""
        if self.sale_type is not None:
            rate = item.get("rate", "")
            if not self.sale_type.rates or rate in self.sale_type.rates:
                self.rate = reference.rate_components(rate)
        # One scan serves both number rules (0300, 0302): (field, code) of each bad number.
        self.bad_numbers: list[tuple[str, str]] = []
        for field, limit in _DECIMALS:
            text = item.get(field, "")
            if text and text != "0" and not _PLAIN[limit].fullmatch(text):
                digits = _fraction_digits(text)
                if digits is None:
                    self.bad_numbers.append((field, "0300"))
                elif digits > limit:
                    self.bad_numbers.append((field, "0302"))

    def violation(self, field: str, code: str, message: str) -> tuple[Violation]:
        return (Violation(f"items[{self.index}].{field}", code, message),)

    def amount(self, field: str) -> Decimal | None:
        return parse_decimal(self.item.get(field, ""))


ItemCheck = Callable[[_Line], Violations]


def _one(path: str, code: str, message: str) -> tuple[Violation]:
    return (Violation(path, code, message),)


def _date(text: str) -> datetime.date | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


def _fraction_digits(text: str) -> int | None:
    """Significant decimal places of a non-negative amount text; ``None`` if not one."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None
    if match[3] is None:
        return len((match[1] or match[2] or "").rstrip("0"))
    exponent = Decimal(text).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _close_enough(actual: Decimal, expected: Decimal) -> bool:
    return abs(actual - expected) <= max(_TOLERANCE_FLOOR, abs(expected) * _TOLERANCE_FRACTION)


def _header_field(field: str, ok: Callable[[Any], object], code: str, message: str) -> Check:
    """A check that the header ``field`` satisfies ``ok``."""

    def check(invoice: Invoice, _: Context) -> Violations:
        return _OK if ok(invoice.get(field, "")) else _one(field, code, message)

    return check


def _item_field(field: str, ok: Callable[[str], object], code: str, message: str) -> ItemCheck:
    """A check that the line ``field`` satisfies ``ok``."""

    def check(line: _Line) -> Violations:
        return _OK if ok(line.item.get(field, "")) else line.violation(field, code, message)

    return check


# --- Header rules that need more than one field ---------------------------------------------


def _seller_is_token_owner(invoice: Invoice, context: Context) -> Violations:
    seller = invoice.get("seller_ntn_cnic", "")
    owner = context.seller_ntn_cnic
    if not owner or seller == owner or not _PARTY_ID.fullmatch(seller):
        return _OK
    return _one(
        "seller_ntn_cnic",
        "0401",
        "The seller NTN/CNIC is not the one the FBR security token was issued to: invoices "
        "must be issued in the name of the token's owner.",
    )


def _invoice_date_format(invoice: Invoice, _: Context) -> Violations:
    text = invoice.get("invoice_date", "")
    if not text or _date(text) is not None:
        return _OK
    message = "The invoice date is not a real date in the form YYYY-MM-DD, e.g. 2025-05-13."
    return _one("invoice_date", "0005", message)


def _invoice_date_not_future(invoice: Invoice, context: Context) -> Violations:
    date = _date(invoice.get("invoice_date", ""))
    if date is None or date <= context.today:
        return _OK
    today = context.today.isoformat()
    message = f"The invoice date is in the future: FBR accepts dates up to today ({today}, PKT)."
    return _one("invoice_date", "0043", message)


def _debit_note_reference(invoice: Invoice, _: Context) -> Violations:
    if invoice.get("invoice_type", "") != INVOICE_TYPE_DEBIT_NOTE:
        return _OK
    number = invoice.get("invoice_ref_no", "")
    length = {7: 22, 13: 28}.get(len(invoice.get("seller_ntn_cnic", "")))
    if number and (length is None or len(number) == length):
        return _OK
    return _one(
        "invoice_ref_no",
        "0026",
        "A debit note must give, in invoice_ref_no, the FBR invoice number of the original "
        "invoice: 22 characters for a seller with an NTN, 28 for a seller with a CNIC.",
    )


def _buyer_id_required(invoice: Invoice, _: Context) -> Violations:
    if invoice.get("buyer_registration_type", "") != REGISTERED or invoice.get("buyer_ntn_cnic"):
        return _OK
    message = "The buyer NTN/CNIC is missing: it is required when the buyer is Registered."
    return _one("buyer_ntn_cnic", "0009", message)


def _buyer_id_format(invoice: Invoice, _: Context) -> Violations:
    buyer = invoice.get("buyer_ntn_cnic", "")
    if not buyer or _BUYER_ID.fullmatch(buyer):
        return _OK
    message = f"The buyer NTN/CNIC is malformed: send 7-digit NTN or 13-digit CNIC, {_ID_HINT}."
    return _one("buyer_ntn_cnic", "0002", message)


def _not_self_invoicing(invoice: Invoice, _: Context) -> Violations:
    buyer = invoice.get("buyer_ntn_cnic", "")
    if not buyer or buyer != invoice.get("seller_ntn_cnic", ""):
        return _OK
    message = "The buyer NTN/CNIC is the seller's own: a business cannot invoice itself."
    return _one("buyer_ntn_cnic", "0058", message)


def _scenario_id(invoice: Invoice, context: Context) -> Violations:
    scenario = invoice.get("scenario_id", "")
    if not scenario:
        return _OK
    if context.environment == "production":
        message = "Leave the scenario id empty in production: scenarios exist only in the sandbox."
        return _one("scenario_id", "0203", message)
    if _SCENARIO_ID.fullmatch(scenario):
        return _OK
    return _one("scenario_id", "0203", "The scenario id must be one of SN001 to SN028.")


# --- Line rules that need more than one field -----------------------------------------------


def _sale_type_matches_scenario(line: _Line) -> Violations:
    scenario = line.invoice.get("scenario_id", "")
    required = reference.scenario_sale_type(scenario) if scenario else None
    if required is None or line.item.get("sale_type", "") == required:
        return _OK
    message = f'Scenario {scenario} is for the sale type "{required}": use it or another scenario.'
    return line.violation("sale_type", "0204", message)


def _required_uom(sale_type: str, uom: str, code: str) -> ItemCheck:
    def check(line: _Line) -> Violations:
        if line.item.get("sale_type", "") != sale_type or line.item.get("uom", "") == uom:
            return _OK
        return line.violation("uom", code, f'Sale type "{sale_type}" needs the unit "{uom}".')

    return check


def _rate_valid(line: _Line) -> Violations:
    rate = line.item.get("rate", "")
    allowed = line.sale_type.rates if line.sale_type is not None else frozenset()
    if rate and (not allowed or rate in allowed):
        return _OK
    choices = ", ".join(f'"{text}"' for text in sorted(allowed)) or "FBR's rate text"
    what = "not allowed for this sale type" if rate else "missing"
    return line.violation("rate", "0046", f"The rate is {what}: use {choices}.")


def _sro_schedule(line: _Line) -> Violations:
    if line.sale_type is None or not line.sale_type.requires_sro:
        return _OK
    if line.item.get("sro_schedule_no", ""):
        return _OK
    message = "The SRO / schedule number is missing: this sale type needs one."
    return line.violation("sro_schedule_no", "0077", message)


def _sro_item_serial(line: _Line) -> Violations:
    if not line.item.get("sro_schedule_no", "") or line.item.get("sro_item_serial_no", ""):
        return _OK
    message = "The SRO item serial number is missing: it is required whenever an SRO is given."
    return line.violation("sro_item_serial_no", "0078", message)


def _amounts_valid(line: _Line) -> Violations:
    if not line.bad_numbers:
        return _OK
    message = "{} must be a plain number, 0 or more (no sign, text or separators)."
    return [
        Violation(f"items[{line.index}].{field}", code, message.format(field))
        for field, code in line.bad_numbers
        if code == "0300"
    ]


def _amount_decimals(line: _Line) -> Violations:
    if not line.bad_numbers:
        return _OK
    return [
        Violation(
            f"items[{line.index}].{field}",
            code,
            f"{field} has too many decimal places: round it to {4 if field == 'quantity' else 2}.",
        )
        for field, code in line.bad_numbers
        if code == "0302"
    ]


def _extra_tax_empty(line: _Line) -> Violations:
    if line.sale_type is None or line.sale_type.category not in _NO_EXTRA_TAX:
        return _OK
    if not line.item.get("extra_tax"):
        return _OK
    message = "Leave extra tax empty (not 0) for reduced-rate, exempt and zero-rated sale types."
    return line.violation("extra_tax", "0091", message)


def _retail_price_required(line: _Line) -> Violations:
    if line.sale_type is None or line.sale_type.category is not _THIRD:
        return _OK
    retail = line.amount("fixed_notified_value_or_retail_price")
    if retail is not None and retail > 0:
        return _OK
    return line.violation(
        "fixed_notified_value_or_retail_price",
        "0090",
        "3rd Schedule goods need the retail price of the line (unit retail price x quantity) "
        "in fixed_notified_value_or_retail_price.",
    )


def _tax_check(line: _Line, code: str, expected: Decimal | None, how: str) -> Violations:
    tax = line.amount("sales_tax_applicable")
    if expected is None or tax is None or _close_enough(tax, expected):
        return _OK
    return line.violation(
        "sales_tax_applicable",
        code,
        f"The sales tax does not match {how} (expected about {expected:.2f}): send that, "
        "rounded to 2 decimals, without further and extra tax.",
    )


def _third_schedule_tax(line: _Line) -> Violations:
    rate = line.rate
    if rate is None or rate.percent is None or line.sale_type is None:
        return _OK
    if line.sale_type.category is not _THIRD:
        return _OK
    retail = line.amount("fixed_notified_value_or_retail_price")
    # Without a retail price 0090 speaks; a tax "mismatch" against 0 would only add noise.
    expected = retail * rate.percent / _HUNDRED if retail else None
    return _tax_check(line, "0102", expected, "the retail price times the rate")


def _percentage_tax(line: _Line) -> Violations:
    rate = line.rate
    if rate is None or rate.percent is None or rate.per_unit is not None:
        return _OK
    if line.sale_type is None or line.sale_type.category is _THIRD:
        return _OK
    value = line.amount("value_sales_excluding_st")
    expected = None if value is None else value * rate.percent / _HUNDRED
    return _tax_check(line, "0104", expected, "the value excluding sales tax times the rate")


def _per_unit_tax(line: _Line) -> Violations:
    rate = line.rate
    if rate is None or rate.per_unit is None or rate.percent is not None:
        return _OK
    quantity = line.amount("quantity")
    expected = None if quantity is None else quantity * rate.per_unit
    return _tax_check(line, "0105", expected, "the quantity times the rupees-per-unit rate")


def _chlorate_tax(line: _Line) -> Violations:
    rate = line.rate
    if rate is None or rate.per_unit is None or rate.percent is None:
        return _OK
    value, quantity = line.amount("value_sales_excluding_st"), line.amount("quantity")
    expected = None
    if value is not None and quantity is not None:
        expected = value * rate.percent / _HUNDRED + quantity * rate.per_unit
    return _tax_check(line, "0103", expected, "value times rate plus quantity times rupees")


def _cotton_ginner_withholding(line: _Line) -> Violations:
    if line.item.get("sale_type", "") != "Cotton ginners":
        return _OK
    withheld = line.amount("sales_tax_withheld_at_source") or _ZERO
    tax = line.amount("sales_tax_applicable")
    if withheld == 0 or tax is None or withheld == tax:
        return _OK
    message = "For cotton ginners, sales tax withheld at source must be 0 or equal the sales tax."
    return line.violation("sales_tax_withheld_at_source", "0008", message)


def _electricity_rate_cap(line: _Line) -> Violations:
    item = line.item
    if item.get("sale_type", "") != "Electricity Supply to Retailers" or item.get("rate") != "5%":
        return _OK
    value, quantity = line.amount("value_sales_excluding_st"), line.amount("quantity")
    if value is None or not quantity or value / quantity <= 20000:
        return _OK
    message = "The 5% rate is not allowed when the value per unit exceeds 20,000."
    return line.violation("rate", "0079", message)


# --- The table ------------------------------------------------------------------------------

_ITEM_CHECK_OF: dict[str, ItemCheck] = {}


def _item(rule_id: str, code: str, summary: str, item_check: ItemCheck) -> Rule:
    def check(invoice: Invoice, context: Context) -> list[Violation]:
        found: list[Violation] = []
        for index, item in enumerate(invoice.get("items") or ()):
            found.extend(item_check(_Line(item, index, invoice, context)))
        return found

    _ITEM_CHECK_OF[rule_id] = item_check
    return Rule(rule_id, code, summary, check)


_seller_id_format = _header_field(
    "seller_ntn_cnic",
    _PARTY_ID.fullmatch,
    "0108",
    f"The seller NTN/CNIC is missing or malformed: send 7-digit NTN or 13-digit CNIC, {_ID_HINT}.",
)
_invoice_type = _header_field(
    "invoice_type",
    {INVOICE_TYPE_SALE, INVOICE_TYPE_DEBIT_NOTE}.__contains__,
    "0003",
    'The invoice type is missing or invalid: send exactly "Sale Invoice" or "Debit Note".',
)
_invoice_date_required = _header_field(
    "invoice_date", bool, "0042", "The invoice date is missing: send it as YYYY-MM-DD."
)
_seller_province = _header_field(
    "seller_province",
    reference.is_known_province,
    "0073",
    f"The seller province is missing or not FBR's name for it. {_PROVINCE_HINT}",
)
_registration_type = _header_field(
    "buyer_registration_type",
    {REGISTERED, UNREGISTERED}.__contains__,
    "0012",
    'The buyer registration type is missing: send "Registered" or "Unregistered".',
)
_buyer_name = _header_field(
    "buyer_business_name", str.strip, "0010", "The buyer business name is missing."
)
_buyer_province = _header_field(
    "buyer_province",
    reference.is_known_province,
    "0074",
    f"The buyer province is missing or not FBR's name for it. {_PROVINCE_HINT}",
)
_items_present = _header_field(
    "items", bool, "0021", "The invoice has no lines: send at least one item."
)
_sale_type_known = _item_field(
    "sale_type",
    reference.is_known_sale_type,
    "0013",
    'The sale type is missing or not FBR\'s exact text, e.g. "Goods at standard rate (default)":'
    " spelling, letter case and spacing must match.",
)
_hs_code_format = _item_field(
    "hs_code",
    _HS_CODE.fullmatch,
    "0019",
    'The HS code is missing or malformed: send 4 digits, a dot, 4 digits, e.g. "0101.2100".',
)
_uom_known = _item_field(
    "uom",
    reference.is_known_uom,
    "0099",
    'The unit of measure is not FBR\'s exact text, e.g. "KG" or "Numbers, pieces, units" '
    "(letter case matters).",
)
_quantity_given = _item_field("quantity", bool, "0098", "The quantity is missing.")
_value_given = _item_field(
    "value_sales_excluding_st", bool, "0021", "The value excluding sales tax is missing."
)
_tax_given = _item_field(
    "sales_tax_applicable", bool, "0018", "The sales tax is missing: send it (0 if none)."
)
_chlorate_in_kg = _required_uom("Potassium Chlorate", "KG", "0097")
_steel_in_mt = _required_uom("Steel melting and re-rolling", "MT", "0062")

# fmt: off
RULES: tuple[Rule, ...] = (
    Rule("seller_ntn_cnic_format", "0108", "Seller NTN 7 / CNIC 13 digits", _seller_id_format),
    Rule("seller_is_token_owner", "0401", "Seller owns the token", _seller_is_token_owner),
    Rule("invoice_type_valid", "0003", "Sale Invoice or Debit Note", _invoice_type),
    Rule("invoice_date_required", "0042", "Invoice date given", _invoice_date_required),
    Rule("invoice_date_format", "0005", "Invoice date is YYYY-MM-DD", _invoice_date_format),
    Rule("invoice_date_not_future", "0043", "Date not after today", _invoice_date_not_future),
    Rule("debit_note_reference", "0026", "Debit note cites the original", _debit_note_reference),
    Rule("seller_province_valid", "0073", "Seller province is FBR's", _seller_province),
    Rule("buyer_registration_type_valid", "0012", "Registered/Unregistered", _registration_type),
    Rule("buyer_ntn_cnic_required", "0009", "Registered buyer has an id", _buyer_id_required),
    Rule("buyer_ntn_cnic_format", "0002", "Buyer id 7, 9 or 13 digits", _buyer_id_format),
    Rule("not_self_invoicing", "0058", "Buyer is not the seller", _not_self_invoicing),
    Rule("buyer_business_name_required", "0010", "Buyer name given", _buyer_name),
    Rule("buyer_province_valid", "0074", "Buyer province is FBR's", _buyer_province),
    Rule("scenario_id_valid", "0203", "Scenario: sandbox only, SN001-SN028", _scenario_id),
    Rule("items_present", "0021", "At least one line", _items_present),
    _item("sale_type_known", "0013", "Sale type is FBR's exact text", _sale_type_known),
    _item("sale_type_matches_scenario", "0204", "Fits the scenario", _sale_type_matches_scenario),
    _item("hs_code_format", "0019", "HS code is NNNN.NNNN", _hs_code_format),
    _item("uom_known", "0099", "UoM is FBR's exact text", _uom_known),
    _item("uom_kg_for_potassium_chlorate", "0097", "Potassium chlorate in KG", _chlorate_in_kg),
    _item("uom_mt_for_steel", "0062", "Steel melting/re-rolling in MT", _steel_in_mt),
    _item("rate_valid_for_sale_type", "0046", "Rate allowed for the sale type", _rate_valid),
    _item("sro_schedule_required", "0077", "SRO given where required", _sro_schedule),
    _item("sro_item_serial_required", "0078", "SRO serial given with SRO", _sro_item_serial),
    _item("quantity_required", "0098", "Quantity given", _quantity_given),
    _item("value_excluding_st_required", "0021", "Value excluding tax given", _value_given),
    _item("sales_tax_required", "0018", "Sales tax given", _tax_given),
    _item("amounts_valid", "0300", "Amounts are numbers, 0 or more", _amounts_valid),
    _item("amount_decimals", "0302", "2 decimals, quantity 4", _amount_decimals),
    _item("extra_tax_empty_when_reduced", "0091", "No extra tax if reduced", _extra_tax_empty),
    _item("third_schedule_retail_price", "0090", "3rd Schedule price", _retail_price_required),
    _item("third_schedule_tax_matches", "0102", "Tax = retail price x rate", _third_schedule_tax),
    _item("percentage_tax_matches", "0104", "Tax = value x rate", _percentage_tax),
    _item("per_unit_tax_matches", "0105", "Tax = quantity x Rs rate", _per_unit_tax),
    _item("potassium_chlorate_tax_matches", "0103", "Tax = value x % + qty x Rs", _chlorate_tax),
    _item("cotton_ginner_withholding", "0008", "STWH 0 or = tax", _cotton_ginner_withholding),
    _item("electricity_rate_cap", "0079", "5% only to 20,000 a unit", _electricity_rate_cap),
)
# fmt: on

_HEADER_CHECKS = tuple(rule.check for rule in RULES if rule.rule_id not in _ITEM_CHECK_OF)
_ITEM_CHECKS = tuple(
    _ITEM_CHECK_OF[rule.rule_id] for rule in RULES if rule.rule_id in _ITEM_CHECK_OF
)


def validate_invoice(invoice: NormalisedInvoice, context: ValidationContext) -> list[Violation]:
    """Every rule the invoice breaks: header violations first, then line by line.

    Equivalent to running each ``RULES[i].check``, but the lines are walked once rather than
    once per rule, because the hub validates thousands of invoices a second.
    """
    violations: list[Violation] = []
    for check in _HEADER_CHECKS:
        violations.extend(check(invoice, context))
    for index, item in enumerate(invoice.get("items") or ()):
        line = _Line(item, index, invoice, context)
        for item_check in _ITEM_CHECKS:
            found = item_check(line)
            if found:
                violations.extend(found)
    return violations
