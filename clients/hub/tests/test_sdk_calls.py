"""Typed errors from a real hub; metadata, interceptors and ``traceparent`` on the wire.

What each call sends is read by a small gRPC server in the test that records the metadata
of every call it receives and answers with the hub's own message types.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any, Callable

import grpc
import pytest
from hubprocess import HubProcess, free_port, make_invoice
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from fbrhub.v1 import error_reason_pb2, invoice_pb2, invoice_service_pb2
from fbrhub_sdk import (
    AsyncHubClient,
    AuthenticationError,
    ConflictError,
    CursorInvalidError,
    HubApiError,
    HubClient,
    MemoryCursorStore,
    NotFoundError,
    RetryPolicy,
    UnavailableError,
)

SERVICE = "fbrhub.v1.InvoiceService"
_tracer = TracerProvider().get_tracer("sdk-tests")


def test_errors_are_typed_by_reason(shared_hub: HubProcess) -> None:
    stranger = HubClient(shared_hub.address, "fbrhub_0000000000000000_nope")
    with stranger, pytest.raises(AuthenticationError) as refused:
        stranger.get_invoice(erp_reference="X")
    assert refused.value.reason == "API_KEY_INVALID"
    assert refused.value.reason_value == error_reason_pb2.API_KEY_INVALID
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    with HubClient(shared_hub.address, shared_hub.api_key) as hub:
        with pytest.raises(NotFoundError) as missing:
            hub.get_invoice(erp_reference="NO-SUCH-INVOICE")
        assert missing.value.metadata["resourceType"] == "invoice"
        (ack,) = hub.submit([make_invoice("ERR-1")])
        with pytest.raises(ConflictError) as conflict:
            hub.resolve_invoice(ack.invoice_id, release_for_resend=True)
        assert conflict.value.reason_value == error_reason_pb2.INVOICE_STATE_CONFLICT
        assert conflict.value.metadata["expectedState"] == "IN_DOUBT"
        with pytest.raises(CursorInvalidError) as cursor:
            next(hub.results(MemoryCursorStore("not-a-cursor"), follow=False))
        assert cursor.value.field_violations[0].field == "cursor"
        assert not cursor.value.retryable


async def test_an_unreachable_hub_is_unavailable_and_retryable() -> None:
    address = f"127.0.0.1:{free_port()}"
    async with AsyncHubClient(address, "key", timeout=2) as hub:
        with pytest.raises(UnavailableError) as down:
            await hub.get_invoice(invoice_id="x")
    assert down.value.retryable
    once = RetryPolicy(max_attempts=1)
    with HubClient(address, "key", submit_retry=once) as hub, pytest.raises(UnavailableError):
        list(hub.submit([make_invoice("DOWN-1")]))
    assert isinstance(down.value, HubApiError)


class _Recorder:
    """A stand-in InvoiceService that records what each call carried."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def _record(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            pairs = context.invocation_metadata() or ()
            self.calls.append((method, {k: str(v) for k, v in pairs}))

    def metadata(self, method: str) -> dict[str, str]:
        with self._lock:
            return next(m for name, m in self.calls if name == method)

    def get_invoice(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("GetInvoice", context)
        record = invoice_pb2.InvoiceRecord(erp_reference=request.erp_reference)
        return invoice_service_pb2.GetInvoiceResponse(invoice=record)

    def stream_results(self, _request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._record("StreamResults", context)
        event = invoice_pb2.ResultEvent(invoice_id="i-1", kind=invoice_pb2.RESULT_KIND_ACCEPTED)
        yield invoice_service_pb2.StreamResultsResponse(event=event, cursor="c-1")

    def submit(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        self._record("SubmitInvoices", context)
        for request in requests:
            yield invoice_service_pb2.SubmitInvoicesResponse(
                acks=[
                    invoice_service_pb2.InvoiceAck(
                        index=i,
                        erp_reference=invoice.erp_reference,
                        outcome=invoice_service_pb2.ACK_OUTCOME_ACCEPTED,
                    )
                    for i, invoice in enumerate(request.invoices)
                ]
            )


def _serializers(request: Any, response: Any) -> dict[str, Callable[..., Any]]:
    return {
        "request_deserializer": request.FromString,
        "response_serializer": response.SerializeToString,
    }


@pytest.fixture
def recorder() -> Iterator[tuple[_Recorder, str]]:
    recorder = _Recorder()
    api = invoice_service_pb2
    handlers = {
        "GetInvoice": grpc.unary_unary_rpc_method_handler(
            recorder.get_invoice, **_serializers(api.GetInvoiceRequest, api.GetInvoiceResponse)
        ),
        "StreamResults": grpc.unary_stream_rpc_method_handler(
            recorder.stream_results,
            **_serializers(api.StreamResultsRequest, api.StreamResultsResponse),
        ),
        "SubmitInvoices": grpc.stream_stream_rpc_method_handler(
            recorder.submit, **_serializers(api.SubmitInvoicesRequest, api.SubmitInvoicesResponse)
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield recorder, f"127.0.0.1:{port}"
    server.stop(None)


class _MethodLog(grpc.aio.UnaryUnaryClientInterceptor):
    """A user's interceptor: notes each unary method and adds a header of its own."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        self.methods.append(method)
        metadata = [*(details.metadata or ()), ("x-intercepted", "yes")]
        details = details._replace(metadata=metadata)
        return await continuation(details, request)


def _traceparent(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_sync_client_sends_metadata_interceptors_and_the_callers_trace(
    recorder: tuple[_Recorder, str],
) -> None:
    server, address = recorder
    interceptor = _MethodLog()
    with (
        HubClient(
            address,
            "the-key",
            metadata=[("x-erp", "odoo-17")],
            interceptors=[interceptor],
        ) as hub,
        _tracer.start_as_current_span("erp-job") as span,
    ):
        hub.get_invoice(erp_reference="R-1", metadata=[("x-request-id", "req-1")])
        acks = list(hub.submit([make_invoice("R-2")]))
        events = list(hub.results(follow=False))
    assert [a.erp_reference for a in acks] == ["R-2"] and len(events) == 1
    expected = _traceparent(span)
    unary = server.metadata("GetInvoice")
    assert unary["authorization"] == "Bearer the-key"
    assert (unary["x-erp"], unary["x-request-id"], unary["x-intercepted"]) == (
        "odoo-17",
        "req-1",
        "yes",
    )
    assert unary["traceparent"] == expected
    for method in ("SubmitInvoices", "StreamResults"):
        assert server.metadata(method)["traceparent"] == expected
        assert server.metadata(method)["x-erp"] == "odoo-17"
    assert interceptor.methods == [f"/{SERVICE}/GetInvoice"]


async def test_async_client_sends_metadata_and_the_callers_trace(
    recorder: tuple[_Recorder, str],
) -> None:
    server, address = recorder

    async def invoices() -> AsyncIterator[invoice_pb2.Invoice]:
        yield make_invoice("A-1")

    async with AsyncHubClient(address, "the-key", metadata=[("x-erp", "erpnext")]) as hub:
        with _tracer.start_as_current_span("erp-task") as span:
            await hub.get_invoice(invoice_id="i-1", metadata=[("x-request-id", "req-2")])
            assert [a.erp_reference async for a in hub.submit(invoices())] == ["A-1"]
        # Outside any span nothing is invented.
        await hub.get_invoice(invoice_id="i-2")
    first, _, last = (m for _, m in server.calls)
    assert first["traceparent"] == _traceparent(span)
    assert (first["x-erp"], first["x-request-id"]) == ("erpnext", "req-2")
    assert server.metadata("SubmitInvoices")["traceparent"] == _traceparent(span)
    assert "traceparent" not in last


def test_metadata_the_sdk_owns_is_refused() -> None:
    with pytest.raises(ValueError, match="authorization"):
        HubClient("127.0.0.1:1", "key", metadata=[("authorization", "Bearer other")])
