"""Pure conversions between protobuf messages and the domain's forms. No I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import status_pb2

from clients.fbr import payload
from clients.fbr.channels import Channel
from clients.fbr.rules import Violation
from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from server.api.convert.common import timestamp
from server.api.convert.pos import pos_from_domain, pos_to_domain
from server.api.errors import build_status
from server.db.models import DeliveryAttempt, Invoice, ResultEvent
from server.invoices.intake import Ack
from server.invoices.model import InvoiceError, SubmittedInvoice
from server.observability.tracing import from_traceparent, trace_id_of

_INVOICE_TYPES = {
    invoice_pb2.INVOICE_TYPE_SALE_INVOICE: payload.INVOICE_TYPE_SALE,
    invoice_pb2.INVOICE_TYPE_DEBIT_NOTE: payload.INVOICE_TYPE_DEBIT_NOTE,
}
_INVOICE_TYPES_BACK = {v: k for k, v in _INVOICE_TYPES.items()}
_REGISTRATION = {
    invoice_pb2.BUYER_REGISTRATION_TYPE_REGISTERED: payload.REGISTERED,
    invoice_pb2.BUYER_REGISTRATION_TYPE_UNREGISTERED: payload.UNREGISTERED,
}
_REGISTRATION_BACK = {v: k for k, v in _REGISTRATION.items()}
_HEADER_TEXT = (
    "invoice_date",
    "buyer_ntn_cnic",
    "buyer_business_name",
    "buyer_province",
    "buyer_address",
    "invoice_ref_no",
    "scenario_id",
)
_ITEM_FIELDS = tuple(name for name, _ in payload.ITEM_FIELDS)
_ATTEMPT_OUTCOMES = {
    "accepted": invoice_pb2.ATTEMPT_OUTCOME_ACCEPTED,
    "rejected": invoice_pb2.ATTEMPT_OUTCOME_REJECTED,
    "retryable": invoice_pb2.ATTEMPT_OUTCOME_RETRYABLE,
    "in_doubt": invoice_pb2.ATTEMPT_OUTCOME_IN_DOUBT,
    "operator": invoice_pb2.ATTEMPT_OUTCOME_OPERATOR_DECISION,
    "not_sent": invoice_pb2.ATTEMPT_OUTCOME_NOT_SENT,
}
_ACK_OUTCOMES = {
    "ACCEPTED": invoice_service_pb2.ACK_OUTCOME_ACCEPTED,
    "DUPLICATE": invoice_service_pb2.ACK_OUTCOME_DUPLICATE,
    "REJECTED": invoice_service_pb2.ACK_OUTCOME_REJECTED,
}
# Errors of invoices the hub answered itself (in an ack or a validation result).
_LOCAL_REASONS = frozenset({"INVOICE_INVALID", "ERP_REFERENCE_REUSED"})
_ERROR_CODES = {
    "FBR_OUTCOME_UNKNOWN": grpc.StatusCode.UNKNOWN,
    "FBR_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "FBR_REJECTED": grpc.StatusCode.FAILED_PRECONDITION,
}
_STATES = {
    name.removeprefix("INVOICE_STATE_"): value for name, value in invoice_pb2.InvoiceState.items()
}
_RESULT_KINDS = {
    "ACCEPTED": invoice_pb2.RESULT_KIND_ACCEPTED,
    "REJECTED": invoice_pb2.RESULT_KIND_REJECTED,
    "IN_DOUBT": invoice_pb2.RESULT_KIND_IN_DOUBT,
    "RESOLVED_ISSUED": invoice_pb2.RESULT_KIND_RESOLVED_ISSUED,
    "REQUEUED": invoice_pb2.RESULT_KIND_REQUEUED,
    "ALERT": invoice_pb2.RESULT_KIND_ALERT,
}


def invoice_to_domain(message: invoice_pb2.Invoice) -> SubmittedInvoice:
    """Protobuf invoice -> the submitted invoice: reference, channel, normalised body."""
    if message.HasField("pos"):
        return SubmittedInvoice(message.erp_reference, Channel.POS, pos_to_domain(message.pos))
    body: payload.NormalisedInvoice = {
        "invoice_type": _INVOICE_TYPES.get(message.invoice_type, ""),
        "buyer_registration_type": _REGISTRATION.get(message.buyer_registration_type, ""),
    }
    for name in _HEADER_TEXT:
        body[name] = getattr(message, name)
    body["items"] = [{name: getattr(item, name) for name in _ITEM_FIELDS} for item in message.items]
    return SubmittedInvoice(message.erp_reference, Channel.DI, body)


def invoice_to_proto(invoice: SubmittedInvoice) -> invoice_pb2.Invoice:
    """A submitted (or stored) invoice as protobuf (the seller block is left out)."""
    body = invoice.body
    if invoice.channel is Channel.POS:
        return invoice_pb2.Invoice(erp_reference=invoice.erp_reference, pos=pos_from_domain(body))
    return invoice_pb2.Invoice(
        erp_reference=invoice.erp_reference,
        invoice_type=_INVOICE_TYPES_BACK.get(
            body.get("invoice_type", ""), invoice_pb2.INVOICE_TYPE_UNSPECIFIED
        ),
        buyer_registration_type=_REGISTRATION_BACK.get(
            body.get("buyer_registration_type", ""),
            invoice_pb2.BUYER_REGISTRATION_TYPE_UNSPECIFIED,
        ),
        items=[
            invoice_pb2.InvoiceItem(**{name: item.get(name, "") for name in _ITEM_FIELDS})
            for item in body.get("items", [])
        ],
        **{name: body.get(name, "") for name in _HEADER_TEXT},
    )


def error_status(error: InvoiceError, *, prefix: str = "") -> status_pb2.Status:
    """An invoice's error as a ``google.rpc.Status``; violation paths under ``prefix``.

    A local rejection answers ``INVALID_ARGUMENT``; FBR's rejection ``FAILED_PRECONDITION``
    (the request was well formed, FBR refused it); a doubt ``UNKNOWN``; a delay
    ``UNAVAILABLE``.
    """
    violations = [
        Violation(f"{prefix}{v.path}", v.fbr_error_code, v.message) for v in error.violations
    ]
    codes = sorted({v.fbr_error_code for v in violations if v.fbr_error_code})
    metadata = {"fbrErrorCodes": ",".join(codes)} if codes else {}
    if error.reason in _LOCAL_REASONS:
        metadata = {"violationCount": str(len(violations)), "fbrErrorCodes": ",".join(codes)}
    return build_status(
        _ERROR_CODES.get(error.reason, grpc.StatusCode.INVALID_ARGUMENT),
        error.message,
        reason=error.reason or "INVOICE_INVALID",
        metadata=metadata or None,
        problems=violations,
    )


def rejection_status(error: InvoiceError, *, index: int) -> status_pb2.Status:
    """A rejected invoice's status as the answer for invoice ``index`` of a batch."""
    return error_status(error, prefix=f"invoices[{index}].")


def stored_error_status(error: Mapping[str, Any] | None) -> status_pb2.Status | None:
    """The stored ``invoices.error`` / event error as a ``google.rpc.Status``."""
    return error_status(InvoiceError.from_json(error)) if error else None


def ack_to_proto(ack: Ack, *, index: int | None = None) -> invoice_service_pb2.InvoiceAck:
    """A domain ack as protobuf.

    Args:
        index: the invoice's position in its request, when that is not ``ack.index`` (acks
            of several coalesced requests are numbered across the whole group).
    """
    index = ack.index if index is None else index
    return invoice_service_pb2.InvoiceAck(
        index=index,
        erp_reference=ack.erp_reference,
        outcome=_ACK_OUTCOMES[ack.outcome.value],
        invoice_id=str(ack.invoice_id) if ack.invoice_id else "",
        state=state_to_proto(ack.state.value) if ack.state else 0,  # type: ignore[arg-type]
        error=rejection_status(ack.error, index=index) if ack.error else None,
    )


def state_to_proto(state: str) -> invoice_pb2.InvoiceState.ValueType:
    """A stored state name as the protobuf enum."""
    return _STATES[state]


def state_from_proto(state: invoice_pb2.InvoiceState.ValueType) -> str:
    """A protobuf state as the stored name."""
    return invoice_pb2.InvoiceState.Name(state).removeprefix("INVOICE_STATE_")


def record_to_proto(
    row: Invoice,
    attempts: list[DeliveryAttempt] | None = None,
    debit_note_ids: list[str] | None = None,
) -> invoice_pb2.InvoiceRecord:
    """A stored invoice (and optionally its attempts and debit notes) as an InvoiceRecord."""
    return invoice_pb2.InvoiceRecord(
        invoice_id=str(row.id),
        erp_reference=row.erp_reference,
        state=state_to_proto(row.state),
        invoice=invoice_to_proto(
            SubmittedInvoice(row.erp_reference, Channel(row.channel), row.payload)
        ),
        fbr_invoice_number=row.fbr_invoice_number or "",
        fbr_dated=row.fbr_dated or "",
        item_statuses=[invoice_pb2.FbrItemStatus(**s) for s in row.item_statuses or []],
        attempts=[
            invoice_pb2.DeliveryAttempt(
                number=a.number,
                start_time=timestamp(a.started_at),
                end_time=timestamp(a.finished_at),
                outcome=_ATTEMPT_OUTCOMES.get(a.outcome or "", 0),  # type: ignore[arg-type]
                http_status=a.http_status or 0,
                fbr_error_code=a.fbr_error_code or "",
                detail=a.detail or "",
                trace_id=a.trace_id or "",
            )
            for a in attempts or []
        ],
        error=stored_error_status(row.error),
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        channel=invoice_pb2.FBR_CHANNEL_POS
        if row.channel == "pos"
        else invoice_pb2.FBR_CHANNEL_DIGITAL_INVOICING,
        original_invoice_id=str(row.original_invoice_id) if row.original_invoice_id else "",
        debit_note_ids=debit_note_ids or [],
        trace_id=trace_id_of(from_traceparent(row.traceparent)),
    )


def alert_to_proto(alert: dict[str, Any]) -> invoice_pb2.HubAlert:
    """A stored alert as protobuf."""
    age = duration_pb2.Duration()
    age.FromTimedelta(dt.timedelta(seconds=float(alert.get("oldest_age_seconds", 0))))
    return invoice_pb2.HubAlert(
        kind=invoice_pb2.AlertKind.Value(f"ALERT_KIND_{alert['kind']}"),
        invoice_count=int(alert.get("invoice_count", 0)),
        oldest_age=age,
        endpoint=alert.get("endpoint", ""),
        detail=alert.get("detail", ""),
    )


def result_to_proto(row: ResultEvent) -> invoice_pb2.ResultEvent:
    """A stored result event as protobuf."""
    data = row.data
    return invoice_pb2.ResultEvent(
        invoice_id=str(row.invoice_id) if row.invoice_id else "",
        alert=alert_to_proto(data["alert"]) if data.get("alert") else None,
        erp_reference=data.get("erp_reference", ""),
        kind=_RESULT_KINDS.get(row.kind, 0),  # type: ignore[arg-type]
        state=state_to_proto(data["state"]) if data.get("state") else 0,  # type: ignore[arg-type]
        fbr_invoice_number=data.get("fbr_invoice_number") or "",
        fbr_dated=data.get("fbr_dated") or "",
        error=stored_error_status(data.get("error")),
        event_time=timestamp(row.created_at),
        trace_id=data.get("trace_id") or "",
    )
