"""Telemetry of every RPC: the server span, the caller's trace context, duration and streams.

:class:`TelemetryInterceptor` is the outermost interceptor. For each call it

1. extracts the caller's W3C ``traceparent``/``tracestate`` and ``baggage`` from the
   metadata (the globally configured propagators), so the server span joins the ERP's trace;
2. starts the server span (RPC semantic conventions: ``rpc.system.name``, ``rpc.method``,
   ``rpc.response.status_code``, ``error.type``, ``server.*``, ``network.peer.*``) before
   the rest of the chain runs, so authentication's database read is inside it;
3. records ``rpc.server.call.duration`` by method and status, and counts open streams.

Health and reflection calls get metrics but no span: probes would otherwise fill the
tracing backend while the hub idles. Baggage is read into the context but never copied into
attributes or logs, and never forwarded to FBR.

The span is made current in the call's own task (each RPC has one) and never detached
across a ``yield``: a stream that the client cancels may be closed later from another task,
where restoring the context would fail; the task's context ends with the call anyway.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
    NETWORK_TRANSPORT,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from server.observability import metrics
from server.observability.semconv import (
    RPC_METHOD,
    RPC_METHOD_ORIGINAL,
    RPC_RESPONSE_STATUS_CODE,
    RPC_SYSTEM_NAME,
)
from server.observability.tracing import get_tracer, mark_error

_tracer = get_tracer(__name__)
_OTHER: Final = "_OTHER"
# Server-side codes that mean the hub failed, not the caller (gRPC semantic conventions).
SERVER_ERRORS: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _carrier(metadata: Any) -> dict[str, str]:
    """The call metadata as a propagation carrier (text keys only)."""
    return {
        key: value
        for key, value in metadata or ()
        if isinstance(value, str) and not key.endswith("-bin")
    }


def _peer(peer: str) -> dict[str, AttributeValue]:
    """``network.peer.*`` from a gRPC peer string such as ``ipv4:127.0.0.1:5123``."""
    scheme, _, rest = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return {}
    host, _, port = rest.rpartition(":")
    attributes: dict[str, AttributeValue] = {NETWORK_PEER_ADDRESS: host.strip("[]")}
    if port.isdigit():
        attributes[NETWORK_PEER_PORT] = int(port)
    return attributes


class _Rpc:
    """One call's span, context and clock, and how it ends."""

    def __init__(
        self,
        span: trace.Span,
        context: otel_context.Context,
        method: str,
        *,
        streaming: bool,
        started: float,
    ) -> None:
        self.span = span
        self.context = context
        self.method = method
        self.streaming = streaming
        self.started = started  # time.perf_counter() when the call arrived

    def begin(self, servicer_context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Make the span current in this task and count the stream as open."""
        otel_context.attach(self.context)
        if self.span.is_recording():
            self.span.set_attributes(_peer(servicer_context.peer()))
        if self.streaming:
            metrics.active_streams.add(1, {RPC_METHOD: self.method})

    def end(self, code: grpc.StatusCode, error: BaseException | None = None) -> None:
        """Record the status, the duration and the end of the span."""
        if self.streaming:
            metrics.active_streams.add(-1, {RPC_METHOD: self.method})
        attributes: dict[str, AttributeValue] = {
            RPC_SYSTEM_NAME: "grpc",
            RPC_METHOD: self.method,
            RPC_RESPONSE_STATUS_CODE: code.name,
        }
        self.span.set_attribute(RPC_RESPONSE_STATUS_CODE, code.name)
        if code in SERVER_ERRORS:
            mark_error(self.span, code.name)
            attributes[ERROR_TYPE] = code.name
        if error is not None and code is grpc.StatusCode.UNKNOWN:
            # Only the class: an exception's message can quote what the caller sent.
            self.span.add_event("exception", {"exception.type": type(error).__name__})
        metrics.rpc_server_duration.record(time.perf_counter() - self.started, attributes)
        self.span.end()


def _status(
    servicer_context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
) -> grpc.StatusCode:
    """The status the call ends with: the one set or aborted with, else from the error."""
    code = servicer_context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if not isinstance(error, Exception):  # cancelled, or a stream closed by the client
        remaining = servicer_context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Traces and measures every RPC (see the module docstring).

    Attributes:
        server_address: ``server.address`` of the spans (the host the server listens on).
        server_port: ``server.port``; set once the port is bound.
    """

    def __init__(self, *, untraced_services: frozenset[str], server_address: str) -> None:
        """Create the interceptor; calls to ``untraced_services`` are measured, not traced."""
        self._untraced = untraced_services
        self.server_address = server_address
        self.server_port: int | None = None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Start the call's span, run the rest of the chain inside it, wrap the handler."""
        started = time.perf_counter()
        method = handler_call_details.method.lstrip("/")
        parent = propagate.extract(_carrier(handler_call_details.invocation_metadata))
        span = self._start(method, parent)
        context = trace.set_span_in_context(span, parent)
        token = otel_context.attach(context)
        try:
            handler = await continuation(handler_call_details)
        finally:
            otel_context.detach(token)
        if handler is None:
            self._unimplemented(span, method, started)
            return None
        streaming = handler.request_streaming or handler.response_streaming
        return _wrap(handler, _Rpc(span, context, method, streaming=streaming, started=started))

    def _start(self, method: str, parent: otel_context.Context) -> trace.Span:
        service = method.split("/", 1)[0]
        if service in self._untraced:
            return trace.INVALID_SPAN
        attributes: dict[str, AttributeValue] = {
            RPC_SYSTEM_NAME: "grpc",
            RPC_METHOD: method,
            SERVER_ADDRESS: self.server_address,
            NETWORK_TRANSPORT: "tcp",
        }
        if self.server_port is not None:
            attributes[SERVER_PORT] = self.server_port
        return _tracer.start_span(method, parent, kind=SpanKind.SERVER, attributes=attributes)

    @staticmethod
    def _unimplemented(span: trace.Span, method: str, started: float) -> None:
        """An unknown method: gRPC answers UNIMPLEMENTED without running anything."""
        if span.is_recording():
            span.update_name(_OTHER)
            span.set_attributes({RPC_METHOD: _OTHER, RPC_METHOD_ORIGINAL: method[:200]})
        rpc = _Rpc(span, otel_context.get_current(), _OTHER, streaming=False, started=started)
        rpc.end(grpc.StatusCode.UNIMPLEMENTED)


def _wrap(handler: Any, rpc: _Rpc) -> Any:
    """The handler with its behaviour run inside the call's span."""
    streaming_behaviour = handler.stream_stream or handler.unary_stream
    # A streaming handler may also be a coroutine that writes with context.write() (the health
    # service's Watch): the wrapper must keep its shape.
    if handler.response_streaming and inspect.isasyncgenfunction(streaming_behaviour):
        behaviour = streaming_behaviour

        async def streaming(
            request: Any, servicer_context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            rpc.begin(servicer_context)
            error: BaseException | None = None
            try:
                async for response in behaviour(request, servicer_context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                rpc.end(_status(servicer_context, error), error)

        wrapped: Callable[..., Any] = streaming
    else:
        behaviour = streaming_behaviour or handler.stream_unary or handler.unary_unary

        async def unary(request: Any, servicer_context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            rpc.begin(servicer_context)
            error: BaseException | None = None
            try:
                return await behaviour(request, servicer_context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                rpc.end(_status(servicer_context, error), error)

        wrapped = unary
    return _FACTORIES[handler.request_streaming, handler.response_streaming](
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


_FACTORIES: Mapping[tuple[bool, bool], Callable[..., Any]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
