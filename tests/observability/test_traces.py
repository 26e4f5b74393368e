"""Following one invoice: from the ERP's traceparent to FBR's answer, in spans and in the API.

An ERP sends invoices with its own W3C ``traceparent``. Its call, the ingest (the producer of
the queued invoice) and each FBR attempt (a trace of its own, linked to the ingest, with the
HTTP call as its child) are recorded by the in-memory exporter; the result event, the audit
events and GetInvoice name the traces, so an SRE goes from the ERP's reference to them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select

from clients.fbr_simulator import Fault, FbrSimulator
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.app import Hub
from server.db.engine import Database
from server.db.models import AuditEvent
from tests.conftest import Tenant
from tests.helpers import metric_points, proto_invoice, results_until


@dataclass(frozen=True)
class ErpTrace:
    """The trace an ERP's call belongs to."""

    trace_id: int
    span_id: int
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"

    @property
    def hex(self) -> str:
        return f"{self.trace_id:032x}"

    def metadata(self, tenant: Tenant) -> tuple[tuple[str, str], ...]:
        return (*tenant.metadata, ("traceparent", self.traceparent), ("baggage", "erp=acme"))


def erp_trace(*, sampled: bool = True) -> ErpTrace:
    rng = random.Random()
    return ErpTrace(rng.getrandbits(128) or 1, rng.getrandbits(64) or 1, sampled)


async def send(
    stub: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, erp: ErpTrace, ref: str
) -> str:
    """Submit one invoice in the ERP's trace; its hub id."""

    async def requests() -> AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest]:
        yield invoice_service_pb2.SubmitInvoicesRequest(invoices=[proto_invoice(ref)])

    call = stub.SubmitInvoices(requests(), metadata=erp.metadata(tenant))
    (response,) = [r async for r in call]
    return response.acks[0].invoice_id


async def get(
    stub: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, invoice_id: str
) -> invoice_pb2.InvoiceRecord:
    response = await stub.GetInvoice(
        invoice_service_pb2.GetInvoiceRequest(invoice_id=invoice_id), metadata=tenant.metadata
    )
    return response.invoice


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


@dataclass
class Story:
    """The spans of one invoice, from the ERP's call to FBR's answers."""

    server: ReadableSpan
    producer: ReadableSpan
    attempts: list[ReadableSpan]
    http: list[ReadableSpan]


def story(spans: Sequence[ReadableSpan], erp: ErpTrace, invoice_id: str) -> Story:
    """Pick one invoice's spans out of everything exported, checking how they connect."""
    (server,) = [
        s
        for s in spans
        if s.name == "fbrhub.v1.InvoiceService/SubmitInvoices"
        and s.context.trace_id == erp.trace_id
    ]
    (producer,) = [s for s in spans if s.name == "send invoices" and s.parent == server.context]
    attempts = sorted(
        (
            s
            for s in spans
            if s.name == "process invoices" and attributes(s)["fbrhub.invoice_id"] == invoice_id
        ),
        key=lambda s: int(attributes(s)["fbrhub.attempt"]),  # type: ignore[call-overload]
    )
    http = []
    for attempt in attempts:
        (child,) = [s for s in spans if s.parent is not None and s.parent == attempt.context]
        http.append(child)
    return Story(server, producer, attempts, http)


def check_connected(found: Story, erp: ErpTrace, tenant: Tenant, hub: Hub) -> None:
    """What every story has in common: the ERP's trace, the producer, the links, the children."""
    server = attributes(found.server)
    assert found.server.kind is SpanKind.SERVER
    assert found.server.parent is not None and found.server.parent.span_id == erp.span_id
    assert server["rpc.system.name"] == "grpc"
    assert server["rpc.method"] == "fbrhub.v1.InvoiceService/SubmitInvoices"
    assert server["rpc.response.status_code"] == "OK"
    assert server["fbrhub.tenant_id"] == str(tenant.id)
    assert server["server.port"] == hub.port
    assert "erp=acme" not in str(server)  # baggage is read, never copied into attributes
    assert found.producer.kind is SpanKind.PRODUCER
    assert attributes(found.producer)["messaging.destination.name"] == "invoices"
    for number, (attempt, http) in enumerate(zip(found.attempts, found.http, strict=True), 1):
        assert attempt.kind is SpanKind.CONSUMER
        assert attempt.parent is None  # a trace of its own...
        assert attempt.context.trace_id != erp.trace_id
        (link,) = attempt.links  # ...linked to the ingest that queued the invoice
        assert link.context.trace_id == erp.trace_id
        assert link.context.span_id == found.producer.context.span_id
        values = attributes(attempt)
        assert values["fbrhub.attempt"] == number
        assert values["fbrhub.tenant_id"] == str(tenant.id)
        assert values["fbrhub.fbr.endpoint"] == "di:sandbox"
        assert http.kind is SpanKind.CLIENT
        assert attributes(http)["http.request.method"] == "POST"
        assert attributes(http)["url.template"] == "/di_data/v1/di/postinvoicedata_sb"


def trace_hex(span: ReadableSpan) -> str:
    return f"{span.context.trace_id:032x}"


async def audit_trace_ids(db: Database, invoice_id: str) -> dict[str, set[str]]:
    """The trace ids of an invoice's audit events, by action."""
    async with db.read() as session:
        rows = await session.execute(
            select(AuditEvent.action, AuditEvent.trace_id).where(
                AuditEvent.resource == f"invoices/{invoice_id}"
            )
        )
        found: dict[str, set[str]] = {}
        for action, trace_id in rows:
            found.setdefault(action, set()).add(trace_id)
        return found


async def test_an_accepted_invoice_is_one_story_from_the_erps_trace_to_fbr(
    hub: Hub,
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    tenant: Tenant,
    db: Database,
    traced: InMemorySpanExporter,
) -> None:
    erp = erp_trace()
    invoice_id = await send(invoices, tenant, erp, "TRACE-1")
    (result,) = await results_until(invoices, tenant, 1)
    record = await get(invoices, tenant, invoice_id)

    found = story(traced.get_finished_spans(), erp, invoice_id)
    check_connected(found, erp, tenant, hub)
    (attempt,) = found.attempts
    assert attributes(attempt)["fbrhub.fbr.outcome"] == "accepted"
    assert attributes(attempt)["messaging.message.id"] == invoice_id
    assert attempt.status.status_code is StatusCode.UNSET
    assert attributes(found.http[0])["http.response.status_code"] == 200
    assert attributes(found.producer)["messaging.message.id"] == invoice_id
    # The API names both traces: the ERP's for the invoice, the attempt's for its outcome.
    assert record.trace_id == erp.hex
    assert [a.trace_id for a in record.attempts] == [trace_hex(attempt)]
    assert result.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED
    assert result.event.trace_id == trace_hex(attempt)
    audit = await audit_trace_ids(db, invoice_id)
    assert audit["invoice.queued"] == {erp.hex}
    assert audit["invoice.sending"] == audit["invoice.accepted"] == {trace_hex(attempt)}


async def test_a_retried_invoice_has_one_linked_span_per_attempt(
    hub: Hub,
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    traced: InMemorySpanExporter,
) -> None:
    simulator.script(Fault.GATEWAY_5XX)
    erp = erp_trace()
    invoice_id = await send(invoices, tenant, erp, "TRACE-RETRY")
    (result,) = await results_until(invoices, tenant, 1)
    record = await get(invoices, tenant, invoice_id)

    found = story(traced.get_finished_spans(), erp, invoice_id)
    check_connected(found, erp, tenant, hub)
    first, second = found.attempts
    assert attributes(first)["fbrhub.fbr.outcome"] == "retryable"
    assert attributes(first)["error.type"] == "retryable"
    assert first.status.status_code is StatusCode.ERROR
    assert attributes(found.http[0])["http.response.status_code"] == 503
    assert attributes(found.http[0])["error.type"] == "503"
    assert attributes(second)["fbrhub.fbr.outcome"] == "accepted"
    assert [a.trace_id for a in record.attempts] == [trace_hex(first), trace_hex(second)]
    assert result.event.trace_id == trace_hex(second)


async def test_an_invoice_in_doubt_names_the_attempt_that_left_it_there(
    hub: Hub,
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    traced: InMemorySpanExporter,
) -> None:
    simulator.script(Fault.HTTP_500_PLAIN)
    erp = erp_trace()
    invoice_id = await send(invoices, tenant, erp, "TRACE-DOUBT")
    (result,) = await results_until(invoices, tenant, 1)
    record = await get(invoices, tenant, invoice_id)

    found = story(traced.get_finished_spans(), erp, invoice_id)
    check_connected(found, erp, tenant, hub)
    (attempt,) = found.attempts
    assert attributes(attempt)["fbrhub.fbr.outcome"] == "in_doubt"
    assert attributes(attempt)["error.type"] == "in_doubt"
    assert attributes(found.http[0])["error.type"] == "500"
    assert result.event.kind == invoice_pb2.RESULT_KIND_IN_DOUBT
    assert result.event.trace_id == trace_hex(attempt)
    assert record.state == invoice_pb2.INVOICE_STATE_IN_DOUBT
    assert record.trace_id == erp.hex


async def test_an_unsampled_caller_gets_no_spans_but_keeps_its_trace_id(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    tenant: Tenant,
    traced: InMemorySpanExporter,
) -> None:
    erp = erp_trace(sampled=False)
    invoice_id = await send(invoices, tenant, erp, "TRACE-UNSAMPLED")
    (result,) = await results_until(invoices, tenant, 1)
    record = await get(invoices, tenant, invoice_id)
    spans = traced.get_finished_spans()
    assert not [s for s in spans if s.context.trace_id == erp.trace_id]
    # The attempt followed the ingest's decision: not recorded either.
    assert not [s for s in spans if attributes(s).get("fbrhub.invoice_id") == invoice_id]
    assert record.trace_id == erp.hex  # logs and the API still name the ERP's trace
    assert result.event.trace_id and result.event.trace_id == record.attempts[0].trace_id


async def test_a_refused_call_is_traced_with_its_status_and_reason(
    hub: Hub, channel: grpc.aio.Channel, traced: InMemorySpanExporter
) -> None:
    stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
    erp = erp_trace()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetInvoice(
            invoice_service_pb2.GetInvoiceRequest(invoice_id=str(uuid.uuid4())),
            metadata=(("authorization", "Bearer nope"), ("traceparent", erp.traceparent)),
        )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    spans = [s for s in traced.get_finished_spans() if s.context.trace_id == erp.trace_id]
    (span,) = [s for s in spans if s.kind is SpanKind.SERVER]
    # A failed authentication costs no write: it is counted, and audited once per window.
    assert {s.name for s in spans} == {span.name}
    values = attributes(span)
    assert values["rpc.response.status_code"] == "UNAUTHENTICATED"
    assert values["fbrhub.error.reason"] == "API_KEY_INVALID"
    # A caller's mistake is not the server's error (gRPC server-span conventions).
    assert "error.type" not in values and span.status.status_code is StatusCode.UNSET
    assert "fbrhub.tenant_id" not in values


async def test_an_unknown_method_is_traced_as_other_and_measured(
    hub: Hub,
    channel: grpc.aio.Channel,
    traced: InMemorySpanExporter,
    metric_reader: InMemoryMetricReader,
) -> None:
    erp = erp_trace()
    call = channel.unary_unary("/fbrhub.v1.InvoiceService/NoSuchMethod")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(b"", metadata=(("traceparent", erp.traceparent),))
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    (span,) = [s for s in traced.get_finished_spans() if s.context.trace_id == erp.trace_id]
    assert span.name == "_OTHER"
    values = attributes(span)
    assert values["rpc.method"] == "_OTHER"
    assert values["rpc.method_original"] == "fbrhub.v1.InvoiceService/NoSuchMethod"
    assert values["error.type"] == "UNIMPLEMENTED" and span.status.status_code is StatusCode.ERROR
    # The metric keeps the method out (a caller could invent any number of names).
    points = metric_points(metric_reader, "rpc.server.call.duration")
    assert not [p for p in points if "NoSuchMethod" in str(p.attributes)]
    assert [p for p in points if p.attributes.get("rpc.method") == "_OTHER"]
