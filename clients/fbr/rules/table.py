"""The rule table, in the order FBR reports: header rules first, then line rules."""

from __future__ import annotations

from collections.abc import Callable

from clients.fbr import reference
from clients.fbr.reference import SaleType, SaleTypeCategory
from clients.fbr.rules import header as h
from clients.fbr.rules import lines as ln
from clients.fbr.rules.context import (
    Context,
    Invoice,
    ItemCheck,
    Line,
    Rule,
    Violation,
    reference_date,
)

ITEM_CHECK_OF: dict[str, ItemCheck] = {}
"""rule id -> the per-line check of each line rule (validate_invoice walks lines once)."""


def _item(rule_id: str, code: str, summary: str, item_check: ItemCheck) -> Rule:
    def check(invoice: Invoice, context: Context) -> list[Violation]:
        found: list[Violation] = []
        on = reference_date(invoice, context)
        for index, item in enumerate(invoice.get("items") or ()):
            found.extend(item_check(Line(item, index, invoice, context, on)))
        return found

    ITEM_CHECK_OF[rule_id] = item_check
    return Rule(rule_id, code, summary, check)


# fmt: off
RULES: tuple[Rule, ...] = (
    Rule("seller_ntn_cnic_format", "0108", "Seller NTN 7 / CNIC 13 digits", h.seller_id_format),
    Rule("seller_is_token_owner", "0401", "Seller owns the token", h.seller_is_token_owner),
    Rule("invoice_type_valid", "0003", "Sale Invoice or Debit Note", h.invoice_type),
    Rule("invoice_date_required", "0042", "Invoice date given", h.invoice_date_required),
    Rule("invoice_date_format", "0005", "Invoice date is YYYY-MM-DD", h.invoice_date_format),
    Rule("invoice_date_not_future", "0043", "Date not after today", h.invoice_date_not_future),
    Rule("debit_note_reference", "0026", "Debit note cites the original", h.debit_note_reference),
    Rule("debit_note_original", "0057", "Original exists; 0029/0034 dates",
         h.debit_note_original),
    Rule("seller_province_valid", "0073", "Seller province is FBR's", h.seller_province),
    Rule("buyer_registration_type_valid", "0012", "Registered/Unregistered", h.registration_type),
    Rule("buyer_ntn_cnic_required", "0009", "Registered buyer has an id", h.buyer_id_required),
    Rule("buyer_ntn_cnic_format", "0002", "Buyer id 7, 9 or 13 digits", h.buyer_id_format),
    Rule("not_self_invoicing", "0058", "Buyer is not the seller", h.not_self_invoicing),
    Rule("buyer_business_name_required", "0010", "Buyer name given", h.buyer_name),
    Rule("buyer_province_valid", "0074", "Buyer province is FBR's", h.buyer_province),
    Rule("scenario_id_valid", "0203", "Scenario: sandbox, SN001-SN028, assigned", h.scenario_id),
    Rule("items_present", "0021", "At least one line", h.items_present),
    _item("sale_type_known", "0013", "Sale type is FBR's exact text", ln.sale_type_known),
    _item("sale_type_matches_scenario", "0204", "Fits the scenario",
          ln.sale_type_matches_scenario),
    _item("hs_code_format", "0019", "HS code is NNNN.NNNN", ln.hs_code_format),
    _item("hs_code_exists", "0044", "HS code in itemdesccode", ln.hs_code_exists),
    _item("uom_known", "0099", "UoM is FBR's exact text", ln.uom_known),
    _item("uom_kg_for_potassium_chlorate", "0097", "Potassium chlorate in KG", ln.chlorate_in_kg),
    _item("uom_mt_for_steel", "0062", "Steel melting/re-rolling in MT", ln.steel_in_mt),
    _item("uom_allowed_for_hs_code", "0099", "UoM allowed by HS_UOM", ln.uom_allowed_for_hs_code),
    _item("rate_valid_for_sale_type", "0046", "Rate allowed (SaleTypeToRate)", ln.rate_valid),
    _item("sro_schedule_required", "0077", "SRO given where required", ln.sro_schedule_required),
    _item("sro_schedule_valid", "0077", "SRO allowed (SroSchedule)", ln.sro_schedule_valid),
    _item("sro_item_serial_required", "0078", "SRO serial given with SRO",
          ln.sro_item_serial_required),
    _item("sro_item_serial_valid", "0078", "SRO serial listed (SROItem)", ln.sro_item_valid),
    _item("quantity_required", "0098", "Quantity given", ln.quantity_given),
    _item("value_excluding_st_required", "0021", "Value excluding tax given", ln.value_given),
    _item("sales_tax_required", "0018", "Sales tax given", ln.tax_given),
    _item("amounts_valid", "0300", "Numbers >= 0, in bound", ln.amounts_valid),
    _item("amount_decimals", "0302", "2 decimals, quantity 4", ln.amount_decimals),
    _item("extra_tax_empty_when_reduced", "0091", "No extra tax if reduced", ln.extra_tax_empty),
    _item("third_schedule_retail_price", "0090", "3rd Schedule price", ln.retail_price_required),
    _item("third_schedule_tax_matches", "0102", "Tax = retail price x rate",
          ln.third_schedule_tax),
    _item("percentage_tax_matches", "0104", "Tax = value x rate", ln.percentage_tax),
    _item("per_unit_tax_matches", "0105", "Tax = quantity x Rs rate", ln.per_unit_tax),
    _item("potassium_chlorate_tax_matches", "0103", "Tax = value x % + qty x Rs", ln.chlorate_tax),
    _item("cotton_ginner_withholding", "0008", "STWH 0 or = tax", ln.cotton_ginner_withholding),
    _item("electricity_rate_cap", "0079", "5% only to 20,000 a unit", ln.electricity_rate_cap),
)
# fmt: on

HEADER_CHECKS = tuple(rule.check for rule in RULES if rule.rule_id not in ITEM_CHECK_OF)
ITEM_CHECKS = tuple(ITEM_CHECK_OF[rule.rule_id] for rule in RULES if rule.rule_id in ITEM_CHECK_OF)

_NO_EXTRA_TAX = (SaleTypeCategory.REDUCED, SaleTypeCategory.EXEMPT, SaleTypeCategory.ZERO_RATED)
# Line rules that can only fire for some sale types (each returns OK for any other, including
# a sale type the hub does not know): skipping them elsewhere keeps validation fast.
_SCOPE: dict[str, Callable[[SaleType], bool]] = {
    "uom_kg_for_potassium_chlorate": lambda s: s.name == "Potassium Chlorate",
    "uom_mt_for_steel": lambda s: s.name == "Steel melting and re-rolling",
    "sro_schedule_required": lambda s: s.requires_sro,
    "extra_tax_empty_when_reduced": lambda s: s.category in _NO_EXTRA_TAX,
    "third_schedule_retail_price": lambda s: s.category is SaleTypeCategory.THIRD_SCHEDULE,
    "third_schedule_tax_matches": lambda s: s.category is SaleTypeCategory.THIRD_SCHEDULE,
    "cotton_ginner_withholding": lambda s: s.name == "Cotton ginners",
    "electricity_rate_cap": lambda s: s.name == "Electricity Supply to Retailers",
}
PRODUCT_RULES = frozenset(
    {
        "sale_type_known",
        "sale_type_matches_scenario",
        "hs_code_format",
        "hs_code_exists",
        "uom_known",
        "uom_kg_for_potassium_chlorate",
        "uom_mt_for_steel",
        "uom_allowed_for_hs_code",
        "rate_valid_for_sale_type",
        "sro_schedule_required",
        "sro_schedule_valid",
        "sro_item_serial_required",
        "sro_item_serial_valid",
    }
)
"""Line rules that look only at the line's product (``context.PRODUCT_FIELDS``, the invoice's
scenario, seller province and reference date), never at amounts or the description: a batch
repeats a seller's few products, so validate_invoice judges each product once."""

_LINE_RULES = tuple(rule.rule_id for rule in RULES if rule.rule_id in ITEM_CHECK_OF)
# Every product rule comes before the other line rules, so judging the product first keeps
# each line's violations in table order.
assert _LINE_RULES[: len(PRODUCT_RULES)] == tuple(r for r in _LINE_RULES if r in PRODUCT_RULES)


def _checks(rule_ids: tuple[str, ...]) -> tuple[tuple[ItemCheck, ...], tuple[ItemCheck, ...]]:
    return (
        tuple(ITEM_CHECK_OF[r] for r in rule_ids if r in PRODUCT_RULES),
        tuple(ITEM_CHECK_OF[r] for r in rule_ids if r not in PRODUCT_RULES),
    )


_GENERIC_CHECKS = _checks(tuple(r for r in _LINE_RULES if r not in _SCOPE))
_CHECKS_BY_SALE_TYPE = {
    sale_type.name: _checks(
        tuple(r for r in _LINE_RULES if r not in _SCOPE or _SCOPE[r](sale_type))
    )
    for sale_type in reference.SALE_TYPES
}


def item_checks_for(sale_type: str) -> tuple[tuple[ItemCheck, ...], tuple[ItemCheck, ...]]:
    """The line checks that can fire for a line of ``sale_type``, in table order: the
    product rules' checks, then the others'."""
    return _CHECKS_BY_SALE_TYPE.get(sale_type, _GENERIC_CHECKS)
