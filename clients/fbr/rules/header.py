"""Header rules: ids, invoice type and date, debit-note references, provinces, buyer, scenario."""

from __future__ import annotations

import datetime
import re

from clients.fbr import reference
from clients.fbr.payload import INVOICE_TYPE_DEBIT_NOTE, INVOICE_TYPE_SALE, REGISTERED, UNREGISTERED
from clients.fbr.rules.context import (
    OK,
    Context,
    Invoice,
    Violations,
    header_field,
    one,
    parse_date,
)

PARTY_ID = re.compile(r"\d{7}|\d{13}", re.ASCII)
_BUYER_ID = re.compile(r"\d{7}|\d{9}|\d{13}", re.ASCII)
_SCENARIO_ID = re.compile(r"SN0(?:0[1-9]|1[0-9]|2[0-8])", re.ASCII)
_ID_HINT = "digits only, without dashes or spaces"
_REFERENCE_LENGTH = {7: 22, 13: 28}
NOTE_WINDOW = datetime.timedelta(days=180)
"""How long after the original a debit note may be issued [SPEC 0034]."""


def seller_is_token_owner(invoice: Invoice, context: Context) -> Violations:
    """0401: the seller is the token's owner."""
    seller = invoice.get("seller_ntn_cnic", "")
    owner = context.seller_ntn_cnic
    if not owner or seller == owner or not PARTY_ID.fullmatch(seller):
        return OK
    return one(
        "seller_ntn_cnic",
        "0401",
        "The seller NTN/CNIC is not the one the FBR security token was issued to: invoices "
        "must be issued in the name of the token's owner.",
    )


def invoice_date_format(invoice: Invoice, _: Context) -> Violations:
    """0005: the date is a real YYYY-MM-DD date."""
    text = invoice.get("invoice_date", "")
    if not text or parse_date(text) is not None:
        return OK
    message = "The invoice date is not a real date in the form YYYY-MM-DD, e.g. 2025-05-13."
    return one("invoice_date", "0005", message)


def invoice_date_not_future(invoice: Invoice, context: Context) -> Violations:
    """0043: the date is not after today in Pakistan."""
    date = parse_date(invoice.get("invoice_date", ""))
    if date is None or date <= context.today:
        return OK
    today = context.today.isoformat()
    message = f"The invoice date is in the future: FBR accepts dates up to today ({today}, PKT)."
    return one("invoice_date", "0043", message)


def debit_note_reference(invoice: Invoice, _: Context) -> Violations:
    """0026: a debit note gives the original's FBR number, 22 (NTN) or 28 (CNIC) long."""
    if invoice.get("invoice_type", "") != INVOICE_TYPE_DEBIT_NOTE:
        return OK
    number = invoice.get("invoice_ref_no", "")
    length = _REFERENCE_LENGTH.get(len(invoice.get("seller_ntn_cnic", "")))
    if number and (length is None or len(number) == length):
        return OK
    return one(
        "invoice_ref_no",
        "0026",
        "A debit note must give, in invoice_ref_no, the FBR invoice number of the original "
        "invoice: 22 characters for a seller with an NTN, 28 for a seller with a CNIC.",
    )


def debit_note_original(invoice: Invoice, context: Context) -> Violations:
    """0057, 0029, 0034: the original exists, is not later, and is at most 180 days older."""
    lookup = context.original_invoice
    if lookup is None or invoice.get("invoice_type", "") != INVOICE_TYPE_DEBIT_NOTE:
        return OK
    number = invoice.get("invoice_ref_no", "")
    length = _REFERENCE_LENGTH.get(len(invoice.get("seller_ntn_cnic", "")))
    if not number or len(number) != length:
        return OK  # 0026 speaks
    original = lookup(number)
    if original is None:
        return one(
            "invoice_ref_no",
            "0057",
            "invoice_ref_no is not the FBR number of an invoice accepted for this seller: give "
            "the number FBR issued for the original invoice.",
        )
    note_date = parse_date(invoice.get("invoice_date", ""))
    if note_date is None:
        return OK  # 0042 / 0005 speak
    if note_date < original:
        return one(
            "invoice_date",
            "0029",
            f"The debit note is dated before its original invoice ({original.isoformat()}): "
            "date it on or after the original.",
        )
    if note_date - original > NOTE_WINDOW:
        last = (original + NOTE_WINDOW).isoformat()
        return one(
            "invoice_date",
            "0034",
            f"A debit note must be issued within 180 days of the original invoice (by {last}).",
        )
    return OK


def _province(name: str, code: str, who: str) -> Violations:
    return one(
        name,
        code,
        f"The {who} province is missing or not FBR's name for it. Use one of: "
        f"{', '.join(reference.PROVINCES)} (a province, never a city).",
    )


def seller_province(invoice: Invoice, context: Context) -> Violations:
    """0073: the seller province is one of FBR's."""
    if context.reference_data.province_code(invoice.get("seller_province", "")) is not None:
        return OK
    return _province("seller_province", "0073", "seller")


def buyer_province(invoice: Invoice, context: Context) -> Violations:
    """0074: the buyer province is one of FBR's."""
    if context.reference_data.province_code(invoice.get("buyer_province", "")) is not None:
        return OK
    return _province("buyer_province", "0074", "buyer")


def buyer_id_required(invoice: Invoice, _: Context) -> Violations:
    """0009: a registered buyer has an NTN/CNIC."""
    if invoice.get("buyer_registration_type", "") != REGISTERED or invoice.get("buyer_ntn_cnic"):
        return OK
    message = "The buyer NTN/CNIC is missing: it is required when the buyer is Registered."
    return one("buyer_ntn_cnic", "0009", message)


def buyer_id_format(invoice: Invoice, _: Context) -> Violations:
    """0002: the buyer id has 7, 9 or 13 digits."""
    buyer = invoice.get("buyer_ntn_cnic", "")
    if not buyer or _BUYER_ID.fullmatch(buyer):
        return OK
    message = f"The buyer NTN/CNIC is malformed: send 7-digit NTN or 13-digit CNIC, {_ID_HINT}."
    return one("buyer_ntn_cnic", "0002", message)


def not_self_invoicing(invoice: Invoice, _: Context) -> Violations:
    """0058: the buyer is not the seller."""
    buyer = invoice.get("buyer_ntn_cnic", "")
    if not buyer or buyer != invoice.get("seller_ntn_cnic", ""):
        return OK
    message = "The buyer NTN/CNIC is the seller's own: a business cannot invoice itself."
    return one("buyer_ntn_cnic", "0058", message)


def scenario_id(invoice: Invoice, context: Context) -> Violations:
    """0203: a scenario only in the sandbox, SN001-SN028, and one assigned to the seller."""
    scenario = invoice.get("scenario_id", "")
    if not scenario:
        return OK
    if context.environment == "production":
        message = "Leave the scenario id empty in production: scenarios exist only in the sandbox."
        return one("scenario_id", "0203", message)
    if not _SCENARIO_ID.fullmatch(scenario):
        return one("scenario_id", "0203", "The scenario id must be one of SN001 to SN028.")
    assigned = context.assigned_scenarios
    if assigned is None or scenario in assigned:
        return OK
    choices = ", ".join(sorted(assigned)) or "none"
    message = (
        f"Scenario {scenario} is not assigned to this seller on IRIS: use one of theirs "
        f"({choices})."
    )
    return one("scenario_id", "0203", message)


seller_id_format = header_field(
    "seller_ntn_cnic",
    PARTY_ID.fullmatch,
    "0108",
    f"The seller NTN/CNIC is missing or malformed: send 7-digit NTN or 13-digit CNIC, {_ID_HINT}.",
)
invoice_type = header_field(
    "invoice_type",
    {INVOICE_TYPE_SALE, INVOICE_TYPE_DEBIT_NOTE}.__contains__,
    "0003",
    'The invoice type is missing or invalid: send exactly "Sale Invoice" or "Debit Note".',
)
invoice_date_required = header_field(
    "invoice_date", bool, "0042", "The invoice date is missing: send it as YYYY-MM-DD."
)
registration_type = header_field(
    "buyer_registration_type",
    {REGISTERED, UNREGISTERED}.__contains__,
    "0012",
    'The buyer registration type is missing: send "Registered" or "Unregistered".',
)
buyer_name = header_field(
    "buyer_business_name", str.strip, "0010", "The buyer business name is missing."
)
items_present = header_field(
    "items", bool, "0021", "The invoice has no lines: send at least one item."
)
