"""Which invoice field each FBR error code is about, for readable rejection paths.

FBR's responses name an error code and (for line errors) the line number, but not the field.
This table turns ``(code, line)`` into a path such as ``items[2].hs_code`` so that a
rejection from FBR reads like one from the hub's own validator. Codes and meanings are
[SPEC §7] and [ERR] (docs/fbr-coverage.md §5); a code not listed here points at the line or
the invoice as a whole.
"""

from __future__ import annotations

from clients.fbr.payload import ITEM_FIELDS

FIELD_BY_FBR_CODE: dict[str, str] = {
    # header
    "0001": "seller_ntn_cnic",
    "0002": "buyer_ntn_cnic",
    "0003": "invoice_type",
    "0005": "invoice_date",
    "0009": "buyer_ntn_cnic",
    "0010": "buyer_business_name",
    "0011": "invoice_type",
    "0012": "buyer_registration_type",
    "0026": "invoice_ref_no",
    "0029": "invoice_date",
    "0034": "invoice_date",
    "0035": "invoice_date",
    "0042": "invoice_date",
    "0043": "invoice_date",
    "0053": "buyer_registration_type",
    "0057": "invoice_ref_no",
    "0058": "buyer_ntn_cnic",
    "0073": "seller_province",
    "0074": "buyer_province",
    "0082": "seller_ntn_cnic",
    "0083": "seller_ntn_cnic",
    "0106": "buyer_ntn_cnic",
    "0107": "buyer_ntn_cnic",
    "0108": "seller_ntn_cnic",
    "0113": "invoice_date",
    "0203": "scenario_id",
    "0401": "seller_ntn_cnic",
    "0402": "buyer_ntn_cnic",
    # lines
    "0008": "sales_tax_withheld_at_source",
    "0013": "sale_type",
    "0018": "sales_tax_applicable",
    "0019": "hs_code",
    "0020": "rate",
    "0204": "sale_type",
    "0021": "value_sales_excluding_st",
    "0022": "sales_tax_withheld_at_source",
    "0023": "sales_tax_applicable",
    "0024": "sales_tax_withheld_at_source",
    "0044": "hs_code",
    "0046": "rate",
    "0050": "sales_tax_withheld_at_source",
    "0052": "hs_code",
    "0055": "sales_tax_withheld_at_source",
    "0060": "uom",
    "0061": "uom",
    "0062": "uom",
    "0077": "sro_schedule_no",
    "0078": "sro_item_serial_no",
    "0079": "rate",
    "0080": "further_tax",
    "0089": "fed_payable",
    "0090": "fixed_notified_value_or_retail_price",
    "0091": "extra_tax",
    "0092": "sale_type",
    "0093": "sale_type",
    "0095": "extra_tax",
    "0096": "uom",
    "0097": "uom",
    "0098": "quantity",
    "0099": "uom",
    "0102": "sales_tax_applicable",
    "0103": "sales_tax_applicable",
    "0104": "sales_tax_applicable",
    "0105": "sales_tax_applicable",
}


LINE_FIELDS = frozenset(name for name, _ in ITEM_FIELDS)


def fbr_error_path(code: str, item_sno: int | None = None) -> str:
    """The path of the field an FBR error is about (``item_sno`` counts from 1).

    Args:
        code: the FBR error code, e.g. "0019".
        item_sno: FBR's line number for a line-level error, or None for a header error.

    Returns:
        e.g. ``items[0].hs_code`` or ``invoice_date``; ``items[i]`` or ``invoice`` when the
        code is not tied to one field.
    """
    field = FIELD_BY_FBR_CODE.get(code)
    if item_sno is not None:
        line = f"items[{max(item_sno - 1, 0)}]"
        return f"{line}.{field}" if field else line
    if field in LINE_FIELDS:
        # A line-level code reported for the whole invoice (e.g. "no lines"): point at the lines.
        return "items"
    return field or "invoice"
