"""The one table of FBR DI rules, shared by the hub's validator and the FBR simulator.

Each :class:`Rule` names the FBR error code FBR itself would answer with (docs/fbr-coverage.md
§5.1) and checks a *normalised* invoice (see :mod:`clients.fbr.payload`). The hub runs the
table before sending, so an invoice FBR would refuse is refused locally with the same code;
the simulator runs the very same table to answer like FBR. Modules: ``context`` (Violation,
ValidationContext, the per-line view), ``header`` and ``lines`` (the checks), ``table``.

Rules needing FBR's lists ask ``ValidationContext.reference_data`` (default: the seed shipped
with the package, :mod:`clients.fbr.refdata`); a list the copy does not hold in full never
refuses by absence. Debit-note rules needing the original ask
``ValidationContext.original_invoice`` (originals live in the hub's database).

Decisions the sources leave open (docs/fbr-coverage.md §9):

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
  sample carries one (``reference.SaleType.requires_sro``). An SRO or serial not in FBR's
  SroSchedule / SROItem list (when the copy is whole) is reported with the same 0077 / 0078:
  FBR documents no separate "invalid SRO" code.
- **HS code.** A malformed code is 0019; a well-formed one missing from a whole itemdesccode
  copy is 0044 (the spec pairs 0019/0044 as "missing or invalid"; two codes keep the causes
  apart). 0052 (HS code vs sale type) needs a mapping FBR does not publish: not checked.
- **UoM for the HS code** is 0099 (0096 when HS_UOM allows only KWH), checked after the
  sale-type unit rules (0097, 0062) so that the more specific code is the one reported.
- **Rates** are read for the seller's province (``originationSupplier``) on the invoice date.
- **Ids.** A seller id that is not 7 or 13 digits is 0108; a well-formed id that is not the
  token owner's is 0401. A buyer id may also have 9 digits, as [SPEC] 0002 allows.
- **Scenario id.** There is no documented code for a malformed scenario id or one sent in
  production; both use 0203 (scenario not assigned), as does a scenario not in
  ``assigned_scenarios``. A scenario's sale type is checked (0204).
- **Debit notes.** Only a ``Debit Note`` is checked against its original (a Sale Invoice's
  ``invoice_ref_no`` is the seller's own number in PRAL's samples [SCN]). Unknown original
  0057, dated before it 0029 (0035 is its purchase twin), more than 180 days after it 0034.
- **No items** is reported as 0021 (line values missing) at path ``items``.
- **Not checked:** that the buyer's registration matches FBR's profile (0053: Get_Reg_Type is
  a network call, never made while validating), 0052, 0060/0061 (their rate texts are not
  published), and the practitioner rule that further and extra tax apply only to
  unregistered buyers (PRAL's own samples break it).

Paths are in our field names, relative to the invoice, with 0-based item indexes
(``items[0].rate``). Messages never repeat an id, name or address, only codes and field names.
"""

from __future__ import annotations

from clients.fbr.payload import NormalisedInvoice
from clients.fbr.rules.context import (
    PRODUCT_FIELDS,
    JudgedProduct,
    Line,
    OriginalInvoiceLookup,
    Rule,
    ValidationContext,
    Violation,
    reference_date,
)
from clients.fbr.rules.table import HEADER_CHECKS, RULES, item_checks_for

__all__ = [
    "RULES",
    "OriginalInvoiceLookup",
    "Rule",
    "ValidationContext",
    "Violation",
    "validate_invoice",
]


# A context is made per batch (hub) or request (simulator); the limit only keeps one that
# lives longer from growing without end.
_JUDGED_PRODUCTS_LIMIT = 10_000


def validate_invoice(invoice: NormalisedInvoice, context: ValidationContext) -> list[Violation]:
    """Every rule the invoice breaks: header violations first, then line by line.

    Equivalent to running each ``RULES[i].check``, but the lines are walked once rather than
    once per rule, because the hub validates thousands of invoices a second. For the same
    reason the product rules (``table.PRODUCT_RULES``) run once per product: their verdict is
    remembered in ``context.judged_products`` and reused, at its own index, by every later
    line of the same product under the same context (a batch in the hub).
    """
    violations: list[Violation] = []
    for check in HEADER_CHECKS:
        violations.extend(check(invoice, context))
    on = reference_date(invoice, context)
    judged = context.judged_products
    invoice_key = (invoice.get("scenario_id", ""), invoice.get("seller_province", ""), on)
    for index, item in enumerate(invoice.get("items") or ()):
        product_checks, other_checks = item_checks_for(item.get("sale_type", ""))
        key = (*invoice_key, *map(item.get, PRODUCT_FIELDS))
        known = judged.get(key)
        if known is None:
            line = Line(item, index, invoice, context, on)
            product_violations = [v for check in product_checks for v in check(line)]
            if len(judged) < _JUDGED_PRODUCTS_LIMIT:
                relative = tuple(map(_within_line, product_violations))
                judged[key] = JudgedProduct(line.product, relative)
        else:
            line = Line(item, index, invoice, context, on, known.product)
            product_violations = [_at_line(index, v) for v in known.violations]
        violations.extend(product_violations)
        for item_check in other_checks:
            found = item_check(line)
            if found:
                violations.extend(found)
    return violations


def _within_line(violation: Violation) -> Violation:
    """``violation`` with its path relative to its line (``items[3].uom`` -> ``uom``)."""
    return Violation(violation.path.split(".", 1)[1], violation.fbr_error_code, violation.message)


def _at_line(index: int, violation: Violation) -> Violation:
    """A line-relative ``violation`` placed at line ``index`` (``uom`` -> ``items[3].uom``)."""
    return Violation(
        f"items[{index}].{violation.path}", violation.fbr_error_code, violation.message
    )
