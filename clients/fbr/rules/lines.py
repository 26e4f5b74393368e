"""Line rules: sale type, HS code, unit, rate, SRO, amounts and the tax arithmetic."""

from __future__ import annotations

import re
from decimal import Decimal

from clients.fbr import reference
from clients.fbr.reference import SaleTypeCategory
from clients.fbr.rules.context import (
    OK,
    ItemCheck,
    Line,
    Violation,
    Violations,
    close_enough,
    item_field,
)

_HS_CODE = re.compile(r"\d{4}\.\d{4}", re.ASCII)
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
# A tuple, not a set: enum members hash in Python code, and `in` on a tuple tests identity.
_NO_EXTRA_TAX = (SaleTypeCategory.REDUCED, SaleTypeCategory.EXEMPT, SaleTypeCategory.ZERO_RATED)
_THIRD = SaleTypeCategory.THIRD_SCHEDULE


def sale_type_known(line: Line) -> Violations:
    """0013: the sale type is FBR's exact transaction type text."""
    if line.context.reference_data.is_sale_type(line.item.get("sale_type", "")):
        return OK
    return line.violation(
        "sale_type",
        "0013",
        "The sale type is missing or not FBR's exact text, e.g. \"Goods at standard rate "
        '(default)": spelling, letter case and spacing must match.',
    )


def sale_type_matches_scenario(line: Line) -> Violations:
    """0204: a sandbox scenario's lines use its sale type."""
    scenario = line.invoice.get("scenario_id", "")
    required = reference.scenario_sale_type(scenario) if scenario else None
    if required is None or line.item.get("sale_type", "") == required:
        return OK
    message = f'Scenario {scenario} is for the sale type "{required}": use it or another scenario.'
    return line.violation("sale_type", "0204", message)


def hs_code_exists(line: Line) -> Violations:
    """0044: a well-formed HS code is in FBR's itemdesccode list (when the copy is whole)."""
    hs_code = line.item.get("hs_code", "")
    if not _HS_CODE.fullmatch(hs_code):
        return OK  # 0019 speaks
    if line.context.reference_data.hs_code_exists(hs_code) is not False:
        return OK
    return line.violation(
        "hs_code",
        "0044",
        "The HS code is not in FBR's list of HS codes: check it against the PCT code of the "
        "product (FBR's itemdesccode list).",
    )


def uom_known(line: Line) -> Violations:
    """0099: the unit is FBR's exact, case-sensitive text."""
    if line.context.reference_data.uom_id(line.item.get("uom", "")) is not None:
        return OK
    return line.violation(
        "uom",
        "0099",
        'The unit of measure is not FBR\'s exact text, e.g. "KG" or "Numbers, pieces, units" '
        "(letter case matters).",
    )


def required_uom(sale_type: str, uom: str, code: str) -> ItemCheck:
    """A check that lines of ``sale_type`` use the unit ``uom``."""

    def check(line: Line) -> Violations:
        if line.item.get("sale_type", "") != sale_type or line.item.get("uom", "") == uom:
            return OK
        return line.violation("uom", code, f'Sale type "{sale_type}" needs the unit "{uom}".')

    return check


def uom_allowed_for_hs_code(line: Line) -> Violations:
    """0099 (0096 when only KWH is allowed): the unit is one HS_UOM allows for the HS code."""
    data = line.context.reference_data
    unit = data.uom_id(line.item.get("uom", ""))
    allowed = data.hs_uoms(line.item.get("hs_code", ""))
    if unit is None or allowed is None or unit in allowed:
        return OK
    texts = sorted(allowed.values())
    code = "0096" if texts == ["KWH"] else "0099"
    choices = ", ".join(f'"{text}"' for text in texts)
    message = f"FBR does not allow this unit for this HS code: use {choices}."
    return line.violation("uom", code, message)


def rate_valid(line: Line) -> Violations:
    """0046: the rate is a text SaleTypeToRate gives for the sale type, date and province."""
    rate = line.item.get("rate", "")
    allowed = line.rates
    if rate and (
        allowed is None
        or line.rate_id is not None
        or not line.context.reference_data.is_complete("SaleTypeToRate")
    ):
        return OK
    choices = ", ".join(f'"{text}"' for text in sorted(allowed or ())) or "FBR's rate text"
    what = "not allowed for this sale type" if rate else "missing"
    return line.violation("rate", "0046", f"The rate is {what}: use {choices}.")


def sro_schedule_required(line: Line) -> Violations:
    """0077: sale types whose PRAL sample carries an SRO need one."""
    if line.sale_type is None or not line.sale_type.requires_sro:
        return OK
    if line.item.get("sro_schedule_no", ""):
        return OK
    message = "The SRO / schedule number is missing: this sale type needs one."
    return line.violation("sro_schedule_no", "0077", message)


def sro_item_serial_required(line: Line) -> Violations:
    """0078: an SRO needs its item serial number."""
    if not line.item.get("sro_schedule_no", "") or line.item.get("sro_item_serial_no", ""):
        return OK
    message = "The SRO item serial number is missing: it is required whenever an SRO is given."
    return line.violation("sro_item_serial_no", "0078", message)


def _sro_id(line: Line) -> int | bool | None:
    """The SRO's id; None when not judgeable; False when the whole list lacks it."""
    schedule = line.item.get("sro_schedule_no", "")
    if not schedule or line.rate_id is None:
        return None
    data = line.context.reference_data
    province = line.invoice.get("seller_province", "")
    schedules = data.sro_schedules(line.rate_id, province, line.on)
    if schedules is None:
        return None
    sro_id = schedules.get(schedule)
    if sro_id is None:
        return False if data.is_complete("SroSchedule") else None
    return sro_id


def sro_schedule_valid(line: Line) -> Violations:
    """0077: the SRO is one SroSchedule gives for the rate, date and province."""
    if _sro_id(line) is not False:
        return OK
    province = line.invoice.get("seller_province", "")
    schedules = line.context.reference_data.sro_schedules(line.rate_id or 0, province, line.on)
    choices = ", ".join(f'"{text}"' for text in sorted(schedules or ()))
    message = f"This SRO / schedule number does not go with the rate: use {choices}."
    return line.violation("sro_schedule_no", "0077", message)


def sro_item_valid(line: Line) -> Violations:
    """0078: the serial number is an item of the SRO (SROItem)."""
    serial = line.item.get("sro_item_serial_no", "")
    sro_id = _sro_id(line)
    if not serial or sro_id is None or isinstance(sro_id, bool):
        return OK
    data = line.context.reference_data
    items = data.sro_items(sro_id, line.on)
    if items is None or serial in items or not data.is_complete("SROItem"):
        return OK
    message = "This item serial number is not in the SRO: use the serial FBR lists for the item."
    return line.violation("sro_item_serial_no", "0078", message)


def amounts_valid(line: Line) -> Violations:
    """0300: amounts are plain non-negative numbers."""
    if not line.bad_numbers:
        return OK
    return [
        Violation(f"items[{line.index}].{name}", code, message)
        for name, code, message in line.bad_numbers
        if code == "0300"
    ]


def amount_decimals(line: Line) -> Violations:
    """0302: at most 2 decimals (quantity 4)."""
    if not line.bad_numbers:
        return OK
    return [
        Violation(f"items[{line.index}].{name}", code, message)
        for name, code, message in line.bad_numbers
        if code == "0302"
    ]


def extra_tax_empty(line: Line) -> Violations:
    """0091: no extra tax (not even 0) on reduced, exempt and zero-rated lines."""
    if line.sale_type is None or line.sale_type.category not in _NO_EXTRA_TAX:
        return OK
    if not line.item.get("extra_tax"):
        return OK
    message = "Leave extra tax empty (not 0) for reduced-rate, exempt and zero-rated sale types."
    return line.violation("extra_tax", "0091", message)


def retail_price_required(line: Line) -> Violations:
    """0090: 3rd Schedule lines carry the retail price."""
    if line.sale_type is None or line.sale_type.category is not _THIRD:
        return OK
    retail = line.amount("fixed_notified_value_or_retail_price")
    if retail is not None and retail > 0:
        return OK
    return line.violation(
        "fixed_notified_value_or_retail_price",
        "0090",
        "3rd Schedule goods need the retail price of the line (unit retail price x quantity) "
        "in fixed_notified_value_or_retail_price.",
    )


def _tax_check(line: Line, code: str, expected: Decimal | None, how: str) -> Violations:
    tax = line.amount("sales_tax_applicable")
    if expected is None or tax is None or close_enough(tax, expected):
        return OK
    return line.violation(
        "sales_tax_applicable",
        code,
        f"The sales tax does not match {how} (expected about {expected:.2f}): send that, "
        "rounded to 2 decimals, without further and extra tax.",
    )


def third_schedule_tax(line: Line) -> Violations:
    """0102: 3rd Schedule tax = retail price x rate."""
    rate = line.rate
    if rate is None or rate.percent is None or line.sale_type is None:
        return OK
    if line.sale_type.category is not _THIRD:
        return OK
    retail = line.amount("fixed_notified_value_or_retail_price")
    # Without a retail price 0090 speaks; a tax "mismatch" against 0 would only add noise.
    expected = retail * rate.percent / _HUNDRED if retail else None
    return _tax_check(line, "0102", expected, "the retail price times the rate")


def percentage_tax(line: Line) -> Violations:
    """0104: tax = value excluding sales tax x rate."""
    rate = line.rate
    if rate is None or rate.percent is None or rate.per_unit is not None:
        return OK
    if line.sale_type is None or line.sale_type.category is _THIRD:
        return OK
    value = line.amount("value_sales_excluding_st")
    expected = None if value is None else value * rate.percent / _HUNDRED
    return _tax_check(line, "0104", expected, "the value excluding sales tax times the rate")


def per_unit_tax(line: Line) -> Violations:
    """0105: tax = quantity x rupees per unit."""
    rate = line.rate
    if rate is None or rate.per_unit is None or rate.percent is not None:
        return OK
    quantity = line.amount("quantity")
    expected = None if quantity is None else quantity * rate.per_unit
    return _tax_check(line, "0105", expected, "the quantity times the rupees-per-unit rate")


def chlorate_tax(line: Line) -> Violations:
    """0103: tax = value x percent + quantity x rupees."""
    rate = line.rate
    if rate is None or rate.per_unit is None or rate.percent is None:
        return OK
    value, quantity = line.amount("value_sales_excluding_st"), line.amount("quantity")
    expected = None
    if value is not None and quantity is not None:
        expected = value * rate.percent / _HUNDRED + quantity * rate.per_unit
    return _tax_check(line, "0103", expected, "value times rate plus quantity times rupees")


def cotton_ginner_withholding(line: Line) -> Violations:
    """0008: cotton ginners' withholding is 0 or the whole tax."""
    if line.item.get("sale_type", "") != "Cotton ginners":
        return OK
    withheld = line.amount("sales_tax_withheld_at_source") or _ZERO
    tax = line.amount("sales_tax_applicable")
    if withheld == 0 or tax is None or withheld == tax:
        return OK
    message = "For cotton ginners, sales tax withheld at source must be 0 or equal the sales tax."
    return line.violation("sales_tax_withheld_at_source", "0008", message)


def electricity_rate_cap(line: Line) -> Violations:
    """0079: 5% for electricity to retailers only up to 20,000 a unit."""
    item = line.item
    if item.get("sale_type", "") != "Electricity Supply to Retailers" or item.get("rate") != "5%":
        return OK
    value, quantity = line.amount("value_sales_excluding_st"), line.amount("quantity")
    if value is None or not quantity or value / quantity <= 20000:
        return OK
    message = "The 5% rate is not allowed when the value per unit exceeds 20,000."
    return line.violation("rate", "0079", message)


hs_code_format = item_field(
    "hs_code",
    _HS_CODE.fullmatch,
    "0019",
    'The HS code is missing or malformed: send 4 digits, a dot, 4 digits, e.g. "0101.2100".',
)
quantity_given = item_field("quantity", bool, "0098", "The quantity is missing.")
value_given = item_field(
    "value_sales_excluding_st", bool, "0021", "The value excluding sales tax is missing."
)
tax_given = item_field(
    "sales_tax_applicable", bool, "0018", "The sales tax is missing: send it (0 if none)."
)
chlorate_in_kg = required_uom("Potassium Chlorate", "KG", "0097")
steel_in_mt = required_uom("Steel melting and re-rolling", "MT", "0062")
