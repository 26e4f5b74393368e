"""Trace-context helpers shared by the hub's spans.

- :func:`get_tracer`: a tracer that carries the pinned semantic-convention schema URL.
- :func:`to_traceparent` / :func:`from_traceparent`: the compact W3C ``traceparent`` kept with
  queued work (an invoice remembers the span that produced it).
- :func:`current_trace_id`: the id written into result and audit events.
- :func:`record_span`: a span recorded after the fact, for polls that only deserve a span
  when they found work.
- :func:`mark_error`: how every hub span records a failure: the class, never the message
  (a message can quote an invoice's values).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from server.observability.semconv import SCHEMA_URL

_PROPAGATOR = TraceContextTextMapPropagator()


def get_tracer(name: str) -> trace.Tracer:
    """The tracer of a hub module (a proxy until a tracer provider is installed)."""
    return trace.get_tracer(name, schema_url=SCHEMA_URL)


def to_traceparent(context: SpanContext) -> str | None:
    """``context`` as a W3C ``traceparent`` value (55 characters), or None when invalid."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def from_traceparent(value: str | None) -> SpanContext | None:
    """The span context a stored ``traceparent`` names (remote), or None when absent or bad."""
    if not value:
        return None
    context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": value}))
    span_context = context.get_span_context()
    return span_context if span_context.is_valid else None


def current_traceparent() -> str | None:
    """The current span's ``traceparent``, or None outside any trace."""
    return to_traceparent(trace.get_current_span().get_span_context())


def trace_id_of(context: SpanContext | None) -> str:
    """The trace id of ``context`` as 32 hex digits, or "" when there is none."""
    return format(context.trace_id, "032x") if context is not None and context.is_valid else ""


def current_trace_id() -> str:
    """The trace id of the current span as 32 hex digits, or "" when not traced."""
    return trace_id_of(trace.get_current_span().get_span_context())


def mark_error(span: trace.Span, error: BaseException | str) -> None:
    """Mark ``span`` failed with ``error.type``: an exception's class or a low-cardinality code."""
    kind = error if isinstance(error, str) else _qualified_name(type(error))
    span.set_attribute(ERROR_TYPE, kind)
    span.set_status(Status(StatusCode.ERROR, kind))


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def record_span(
    tracer: trace.Tracer,
    name: str,
    start_ns: int,
    attributes: Mapping[str, AttributeValue],
    *,
    error: BaseException | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> None:
    """Record a finished span that started at ``start_ns`` (``time.time_ns()``) and ends now.

    For work that is only worth a span once it is known to have done something (a poll that
    found invoices, a check that raised an alert): idle rounds leave no trace at all.
    """
    span = tracer.start_span(name, kind=kind, attributes=attributes, start_time=start_ns)
    if error is not None:
        mark_error(span, error)
    span.end(end_time=time.time_ns())


__all__ = [
    "current_trace_id",
    "current_traceparent",
    "from_traceparent",
    "get_tracer",
    "mark_error",
    "record_span",
    "to_traceparent",
    "trace_id_of",
]
