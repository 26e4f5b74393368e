"""Requests that read invoices, as the domain's queries; and print data as protobuf."""

from __future__ import annotations

import uuid

from clients.fbr.pos.payload import POS_SERVICE_FEE
from clients.fbr.qr import QR_VERSION, print_data
from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from server.api.convert.common import date_from_text, time_from_proto
from server.api.limits import check_list
from server.db.models import InvoiceState
from server.errors import InvalidField, NotFound
from server.invoices.queries import InvoiceFilters, InvoiceLookup, PrintFacts

# Every settable state: a value the enum does not name (a newer client's, or a forged one)
# is a clear INVALID_ARGUMENT rather than an empty page.
_STATES = {
    value: InvoiceState(name.removeprefix("INVOICE_STATE_"))
    for name, value in invoice_pb2.InvoiceState.items()
    if value != invoice_pb2.INVOICE_STATE_UNSPECIFIED
}


def lookup_from_request(invoice_id: str, erp_reference: str) -> InvoiceLookup:
    """The invoice a "by id or by ERP reference" request names.

    Raises:
        InvalidField: neither or both are set.
        NotFound: the id is not a UUID (so no invoice can have it).
    """
    if bool(invoice_id) == bool(erp_reference):
        raise InvalidField("invoice_id", "set exactly one of invoice_id and erp_reference")
    if erp_reference:
        return InvoiceLookup(erp_reference=erp_reference)
    return InvoiceLookup(invoice_id=invoice_id_from_text(invoice_id))


def invoice_id_from_text(text: str) -> uuid.UUID:
    """A hub invoice id; one that is not a UUID names no invoice (NOT_FOUND)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound("invoice") from None


def filters_from_request(request: invoice_service_pb2.ListInvoicesRequest) -> InvoiceFilters:
    """The filters of a ListInvoices request.

    Raises:
        InvalidField: an unknown or unspecified state, a time out of range, a malformed date.
    """
    check_list(request.states, "states")
    states = []
    for index, value in enumerate(request.states):
        if value not in _STATES:
            raise InvalidField(f"states[{index}]", "states must be InvoiceState values")
        states.append(_STATES[value])
    return InvoiceFilters(
        states=tuple(dict.fromkeys(states)),
        received_after=time_from_proto(request.received_after, "received_after")
        if request.HasField("received_after")
        else None,
        received_before=time_from_proto(request.received_before, "received_before")
        if request.HasField("received_before")
        else None,
        invoice_date_from=date_from_text(request.invoice_date_from, "invoice_date_from")
        if request.invoice_date_from
        else None,
        invoice_date_to=date_from_text(request.invoice_date_to, "invoice_date_to")
        if request.invoice_date_to
        else None,
    )


def print_data_to_proto(facts: PrintFacts) -> invoice_service_pb2.GetPrintDataResponse:
    """What an accepted invoice's printout shows: the number, the date and its QR code."""
    printed = print_data(facts.fbr_invoice_number, facts.fbr_dated)
    pos = facts.channel == "pos"
    return invoice_service_pb2.GetPrintDataResponse(
        fbr_invoice_number=printed.fbr_invoice_number,
        fbr_dated=printed.dated,
        qr_png=printed.qr_png,
        qr_svg=printed.qr_svg,
        qr_version=QR_VERSION,
        qr_error_correction=printed.qr_error_level,
        channel=invoice_pb2.FBR_CHANNEL_POS if pos else invoice_pb2.FBR_CHANNEL_DIGITAL_INVOICING,
        pos_service_fee=f"{POS_SERVICE_FEE:.2f}" if pos else "",
    )
