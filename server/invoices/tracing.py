"""Tracing the outbox as a queue: the span that queues invoices, and the span of each attempt.

The messaging semantic conventions (v1.44.0), with the outbox as system ``fbrhub`` and
destination ``invoices``:

- Ingest of a batch is the producer: a PRODUCER span ``send invoices`` around the store
  transaction, a child of the ERP's call. Each invoice keeps that span's ``traceparent``.
- Each FBR attempt is a CONSUMER span ``process invoices``: a trace of its own (an invoice
  may wait hours for FBR, and one long trace per ERP stream would hold thousands of them),
  *linked* to its invoice's producer span, and sampled as that span was
  (:mod:`server.observability.sampling`). The FBR client's HTTP span is its child. It carries
  the invoice id, tenant id, attempt number, endpoint, outcome and FBR code, and the outcome
  is logged inside it, so the log line has the attempt's trace id.

An FBR rejection is an answer, not a failure: only RETRYABLE and IN_DOUBT mark the attempt
span as an error (``error.type`` is the outcome).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import Link, Span, SpanKind

from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from server.clock import utcnow
from server.observability import metrics
from server.observability.semconv import (
    ATTEMPT,
    FBR_ENDPOINT,
    FBR_ERROR_CODE,
    FBR_OUTCOME,
    INVOICE_ID,
    MESSAGING_BATCH_MESSAGE_COUNT,
    MESSAGING_CLIENT_ID,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    OUTBOX_QUEUE,
    OUTBOX_SYSTEM,
    TENANT_ID,
)
from server.observability.tracing import (
    from_traceparent,
    get_tracer,
    mark_error,
    to_traceparent,
    trace_id_of,
)

if TYPE_CHECKING:
    from server.invoices.claims import Claimed

logger = logging.getLogger(__name__)
_tracer = get_tracer(__name__)
_QUEUE = {
    MESSAGING_SYSTEM: OUTBOX_SYSTEM,
    MESSAGING_DESTINATION_NAME: OUTBOX_QUEUE,
}
_FINAL = (OutcomeKind.ACCEPTED, OutcomeKind.REJECTED, OutcomeKind.IN_DOUBT)
_LOG_LEVELS = {OutcomeKind.ACCEPTED: logging.DEBUG, OutcomeKind.REJECTED: logging.INFO}


class Producer:
    """The producer span of one ingest batch."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.traceparent = to_traceparent(span.get_span_context())

    def queued(self, invoice_ids: Sequence[uuid.UUID]) -> None:
        """Say what the batch queued: one invoice's id, or how many."""
        if len(invoice_ids) == 1:
            self.span.set_attribute(MESSAGING_MESSAGE_ID, str(invoice_ids[0]))
        else:
            self.span.set_attribute(MESSAGING_BATCH_MESSAGE_COUNT, len(invoice_ids))


@contextmanager
def producer_span(tenant_id: uuid.UUID) -> Iterator[Producer]:
    """The PRODUCER span ``send invoices`` of one ingest batch, current while it runs."""
    with _tracer.start_as_current_span(
        f"send {OUTBOX_QUEUE}",
        kind=SpanKind.PRODUCER,
        attributes={
            **_QUEUE,
            MESSAGING_OPERATION_TYPE: "send",
            MESSAGING_OPERATION_NAME: "send",
            TENANT_ID: str(tenant_id),
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield Producer(span)
        except Exception as exc:
            mark_error(span, exc)
            raise


class Attempt:
    """The span of one delivery attempt while it runs; :meth:`finish` records the outcome."""

    def __init__(self, span: Span, claimed: Claimed, endpoint: str) -> None:
        self.span = span
        self.trace_id = trace_id_of(span.get_span_context())
        self._claimed = claimed
        self._endpoint = endpoint

    def finish(self, outcome: DeliveryOutcome) -> None:
        """Record FBR's answer: span attributes and status, the log line, the latency SLI."""
        claimed = self._claimed
        kind = outcome.kind.name.lower()
        span = self.span
        span.set_attribute(FBR_OUTCOME, kind)
        if outcome.http_status is not None:
            span.set_attribute(HTTP_RESPONSE_STATUS_CODE, outcome.http_status)
        if outcome.error_code:
            span.set_attribute(FBR_ERROR_CODE, outcome.error_code)
        if outcome.kind not in (OutcomeKind.ACCEPTED, OutcomeKind.REJECTED):
            mark_error(span, kind)
        if outcome.kind in _FINAL and claimed.received_at is not None:
            metrics.receipt_to_outcome.record(
                max(0.0, (utcnow() - claimed.received_at).total_seconds()),
                {FBR_ENDPOINT: self._endpoint, FBR_OUTCOME: kind},
            )
        logger.log(
            _LOG_LEVELS.get(outcome.kind, logging.WARNING),
            "FBR answered attempt %d: %s (%s)",
            claimed.attempt,
            outcome.kind.name,
            outcome.detail,
            extra={
                "invoice_id": str(claimed.invoice_id),
                "tenant_id": str(claimed.tenant.id),
                "attempt": claimed.attempt,
                "endpoint": self._endpoint,
                "outcome": kind,
                "http_status": outcome.http_status,
                "fbr_error_code": outcome.error_code or None,
            },
        )


@contextmanager
def attempt_span(claimed: Claimed, endpoint: str) -> Iterator[Attempt]:
    """The CONSUMER span ``process invoices`` of one attempt: a new trace, linked to ingest."""
    producer = from_traceparent(claimed.traceparent)
    with _tracer.start_as_current_span(
        f"process {OUTBOX_QUEUE}",
        context=otel_context.Context(),  # a root: never a child of whatever runs the loop
        kind=SpanKind.CONSUMER,
        links=[Link(producer)] if producer is not None else None,
        attributes={
            **_QUEUE,
            MESSAGING_OPERATION_TYPE: "process",
            MESSAGING_OPERATION_NAME: "process",
            MESSAGING_MESSAGE_ID: str(claimed.invoice_id),
            MESSAGING_CLIENT_ID: claimed.worker,
            INVOICE_ID: str(claimed.invoice_id),
            TENANT_ID: str(claimed.tenant.id),
            ATTEMPT: claimed.attempt,
            FBR_ENDPOINT: endpoint,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield Attempt(span, claimed, endpoint)
        except Exception as exc:
            mark_error(span, exc)
            raise
