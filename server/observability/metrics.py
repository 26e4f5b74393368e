"""The hub's OpenTelemetry metrics. Labels are low-cardinality codes and ids, never personal data.

Instruments are created from the global meter provider, so they are no-ops until
:func:`server.observability.telemetry.configure_metrics` installs a provider
(``OTEL_METRICS_EXPORTER``). Gauges read from small in-process registries that the forwarder
and the queue monitor update.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

_meter = metrics.get_meter("fbrhub")

invoices_ingested = _meter.create_counter(
    "fbrhub.invoices.ingested", unit="{invoice}", description="Submitted invoices by ack outcome"
)
fbr_requests = _meter.create_counter(
    "fbrhub.fbr.requests", unit="{request}", description="FBR requests by endpoint and outcome"
)
fbr_request_duration = _meter.create_histogram(
    "fbrhub.fbr.request.duration", unit="s", description="FBR request latency"
)

# endpoint -> value; updated by the forwarder.
circuit_states: dict[str, int] = {}
adaptive_limits: dict[str, int] = {}
in_flight: dict[str, int] = {}
# (tenant id, measure) -> value; updated by the queue monitor.
queue_gauges: dict[tuple[str, str], float] = {}

CIRCUIT_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


def _endpoint_gauge(values: dict[str, int]) -> object:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"endpoint": k}) for k, v in list(values.items())]

    return observe


def _queue_gauge(measure: str) -> object:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(v, {"tenant_id": tenant})
            for (tenant, name), v in list(queue_gauges.items())
            if name == measure
        ]

    return observe


_meter.create_observable_gauge(
    "fbrhub.fbr.circuit.state",
    callbacks=[_endpoint_gauge(circuit_states)],  # type: ignore[list-item]
    description="0 closed, 1 half-open, 2 open",
)
_meter.create_observable_gauge(
    "fbrhub.fbr.concurrency.limit",
    callbacks=[_endpoint_gauge(adaptive_limits)],  # type: ignore[list-item]
    description="Adaptive concurrency limit toward FBR",
)
_meter.create_observable_gauge(
    "fbrhub.fbr.in_flight",
    callbacks=[_endpoint_gauge(in_flight)],  # type: ignore[list-item]
    description="Requests in flight to FBR",
)
for _measure, _description in (
    ("pending", "Invoices not yet in a final state"),
    ("in_doubt", "Invoices in doubt, waiting for an operator"),
    ("stuck", "Pending invoices older than the stuck threshold"),
    ("oldest_pending_age_seconds", "Age of the oldest pending invoice"),
):
    _meter.create_observable_gauge(
        f"fbrhub.queue.{_measure}",
        callbacks=[_queue_gauge(_measure)],  # type: ignore[list-item]
        description=_description,
    )
