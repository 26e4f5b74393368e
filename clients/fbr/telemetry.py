"""Telemetry of one FBR call: its HTTP client span, its duration metric and its log line.

Both follow the HTTP semantic conventions (v1.44.0): the span is named
``POST <path>`` (kind CLIENT) with ``http.request.method``, ``url.full``, ``url.template``,
``server.address``, ``server.port``, ``http.response.status_code``,
``network.protocol.version`` and ``error.type`` (the status code from 400 up, or the class
of the transport error); ``http.client.request.duration`` (seconds) has the low-cardinality
ones, and both add ``fbrhub.fbr.endpoint`` (``di:sandbox``, ``pos:production``...) and
``fbrhub.fbr.outcome``. The request carries the span's W3C ``traceparent`` (trace context
only, never baggage). Bodies, tokens and NTNs never reach a span, a metric or a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import httpx
from opentelemetry import metrics, trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL, URL_SCHEME
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from clients.fbr.responses import DeliveryOutcome

_log = logging.getLogger("clients.fbr.client")
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"
_tracer = trace.get_tracer("clients.fbr", schema_url=SCHEMA_URL)
_meter = metrics.get_meter("clients.fbr", schema_url=SCHEMA_URL)
_propagator = TraceContextTextMapPropagator()

# The conventions' advice (5 ms to 10 s) and two more for FBR's slow tail and timeouts.
FBR_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 15, 30,
)  # fmt: skip
request_duration = _meter.create_histogram(
    "http.client.request.duration",
    unit="s",
    description="Duration of HTTP requests to FBR, including reading the answer",
    explicit_bucket_boundaries_advisory=FBR_BUCKETS,
)
URL_TEMPLATE: Final = "url.template"
FBR_ENDPOINT: Final = "fbrhub.fbr.endpoint"
FBR_OUTCOME: Final = "fbrhub.fbr.outcome"
FBR_ERROR_CODE: Final = "fbrhub.fbr.error_code"


def endpoint_name(operation: str, environment: str) -> str:
    """``<channel>:<environment>``: the unit FBR's limits and breakers are kept per."""
    return f"{'pos' if operation == 'pos' else 'di'}:{environment}"


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


class FbrCall:
    """What is measured of one call while it runs; :meth:`finish` records the outcome."""

    def __init__(self, span: trace.Span, request: httpx.Request, endpoint: str) -> None:
        self.span = span
        self._started = time.perf_counter()
        self._metric: dict[str, AttributeValue] = {
            HTTP_REQUEST_METHOD: request.method,
            SERVER_ADDRESS: request.url.host,
            SERVER_PORT: _port(request.url),
            FBR_ENDPOINT: endpoint,
        }

    def finish(
        self,
        outcome: DeliveryOutcome,
        *,
        error_type: str | None,
        http_version: str | None,
        operation: str,
        request_id: str,
    ) -> None:
        """Record the answer (or its absence) on the span, the metric and the log."""
        metric = {**self._metric, FBR_OUTCOME: outcome.kind.name.lower()}
        span = self.span
        if outcome.http_status is not None:
            metric[HTTP_RESPONSE_STATUS_CODE] = outcome.http_status
            if error_type is None and outcome.http_status >= 400:
                error_type = str(outcome.http_status)
        if error_type is not None:
            metric[ERROR_TYPE] = error_type
        request_duration.record(time.perf_counter() - self._started, metric)
        if span.is_recording():
            span.set_attributes({k: v for k, v in metric.items() if k not in self._metric})
            if http_version:
                span.set_attribute(NETWORK_PROTOCOL_VERSION, http_version.removeprefix("HTTP/"))
            if outcome.error_code:
                span.set_attribute(FBR_ERROR_CODE, outcome.error_code)
            if error_type is not None:
                span.set_status(Status(StatusCode.ERROR, error_type))
        # Inside the span, so the line carries its trace id; the hub logs the attempt's
        # outcome itself, this is the client's detail for debugging.
        _log.debug(
            "FBR %s %s -> %s (%s)",
            operation,
            self._metric[FBR_ENDPOINT],
            outcome.kind.name,
            outcome.detail,
            extra={"invoice_id": request_id or None, "http_status": outcome.http_status},
        )


@contextmanager
def fbr_call(request: httpx.Request, endpoint: str) -> Iterator[FbrCall]:
    """The span of one FBR request, current while it runs; puts its context on the request."""
    path = request.url.path
    attributes: dict[str, AttributeValue] = {
        HTTP_REQUEST_METHOD: request.method,
        # Scheme, host, port and path: never credentials or a query.
        URL_FULL: f"{request.url.scheme}://{request.url.netloc.decode()}{path}",
        URL_SCHEME: request.url.scheme,
        URL_TEMPLATE: path,
        SERVER_ADDRESS: request.url.host,
        SERVER_PORT: _port(request.url),
        FBR_ENDPOINT: endpoint,
    }
    with _tracer.start_as_current_span(
        f"{request.method} {path}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        # Exception messages may quote anything; the caller records the class only.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        _propagator.inject(request.headers)
        call = FbrCall(span, request, endpoint)
        try:
            yield call
        except BaseException as exc:
            span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise
