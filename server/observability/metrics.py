"""The hub's OpenTelemetry metrics: low-cardinality attributes, never personal data.

Instruments come from the global meter provider, so they are no-ops until
:func:`server.observability.telemetry.configure_telemetry` installs one
(``OTEL_METRICS_EXPORTER``). Durations are in seconds with explicit bucket boundaries chosen
for what each one measures. Gauges read small in-process registries: the forwarder updates
the endpoint ones, and the queue monitor publishes whole snapshots of the queue ones (see
:class:`QueueGauges`). docs/observability.md lists every metric with its attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from server.observability.semconv import (
    FBR_ENDPOINT,
    RPC_SERVER_CALL_DURATION,
    SCHEMA_URL,
    TENANT_ID,
)

_meter = metrics.get_meter("fbrhub", schema_url=SCHEMA_URL)

# The semantic conventions' advice for RPC and HTTP durations.
RPC_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# Ingest: validation and a commit take milliseconds; seconds mean the database is struggling.
INGEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From receipt to FBR's answer: about a second when FBR is healthy, hours through an outage.
OUTCOME_BUCKETS: Final = (
    0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
)  # fmt: skip

rpc_server_duration = _meter.create_histogram(
    RPC_SERVER_CALL_DURATION,
    unit="s",
    description="Duration of incoming RPCs (a stream lasts until it closes)",
    explicit_bucket_boundaries_advisory=RPC_BUCKETS,
)
active_streams = _meter.create_up_down_counter(
    "fbrhub.rpc.server.active_streams",
    unit="{stream}",
    description="Streaming RPCs open now, by method",
)
invoices_ingested = _meter.create_counter(
    "fbrhub.invoices.ingested", unit="{invoice}", description="Submitted invoices by ack outcome"
)
ingest_commit_duration = _meter.create_histogram(
    "fbrhub.ingest.commit.duration",
    unit="s",
    description="Time to store one coalesced ingest batch (the transaction, begin to commit)",
    explicit_bucket_boundaries_advisory=INGEST_BUCKETS,
)
ingest_ack_duration = _meter.create_histogram(
    "fbrhub.ingest.ack.duration",
    unit="s",
    description="Time from reading a SubmitInvoices request to sending its acks",
    explicit_bucket_boundaries_advisory=INGEST_BUCKETS,
)
receipt_to_outcome = _meter.create_histogram(
    "fbrhub.invoice.receipt_to_outcome.duration",
    unit="s",
    description="Time from an invoice's receipt (its ack) to FBR's final answer",
    explicit_bucket_boundaries_advisory=OUTCOME_BUCKETS,
)
fbr_requests = _meter.create_counter(
    "fbrhub.fbr.requests", unit="{request}", description="FBR requests by endpoint and outcome"
)

# endpoint -> value; updated by the forwarder (each process has its own breakers and limits).
circuit_states: dict[str, int] = {}
adaptive_limits: dict[str, int] = {}
in_flight: dict[str, int] = {}

CIRCUIT_STATE_VALUE: Final = {"closed": 0, "half_open": 1, "open": 2}
QUEUE_MEASURES: Final = ("pending", "in_doubt", "stuck", "oldest_pending_age")


class QueueGauges:
    """The latest queue snapshot of the cluster, as this process reports it.

    The queue monitor publishes a value for every tenant and measure each round, so a
    drained queue reads 0 instead of keeping its last value; a monitor that is not the
    cluster's reporter publishes nothing (:meth:`clear`), so each queue is reported once.
    Snapshots are kept per publishing monitor (one per hub; tests run several in a process).
    """

    def __init__(self) -> None:
        self._snapshots: dict[int, dict[tuple[str, str], float]] = {}

    def publish(self, owner: object, values: Mapping[tuple[str, str], float]) -> None:
        """Replace ``owner``'s snapshot: ``(tenant id, measure) -> value``."""
        self._snapshots[id(owner)] = dict(values)

    def clear(self, owner: object) -> None:
        """Report nothing more from ``owner``."""
        self._snapshots.pop(id(owner), None)

    def value(self, tenant_id: str, measure: str) -> float | None:
        """The published value, or None when no monitor reports it."""
        for snapshot in list(self._snapshots.values()):
            if (tenant_id, measure) in snapshot:
                return snapshot[tenant_id, measure]
        return None

    def callback(self, measure: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """The observable-gauge callback of one measure."""

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(value, {TENANT_ID: tenant})
                for snapshot in list(self._snapshots.values())
                for (tenant, name), value in snapshot.items()
                if name == measure
            ]

        return observe


queue_gauges = QueueGauges()


def _endpoint_gauge(values: dict[str, int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {FBR_ENDPOINT: k}) for k, v in list(values.items())]

    return observe


_meter.create_observable_gauge(
    "fbrhub.fbr.circuit.state",
    callbacks=[_endpoint_gauge(circuit_states)],
    unit="{state}",
    description="Circuit breaker toward FBR: 0 closed, 1 half-open (probing), 2 open",
)
_meter.create_observable_gauge(
    "fbrhub.fbr.concurrency.limit",
    callbacks=[_endpoint_gauge(adaptive_limits)],
    unit="{request}",
    description="Adaptive concurrency limit toward FBR",
)
_meter.create_observable_gauge(
    "fbrhub.fbr.in_flight",
    callbacks=[_endpoint_gauge(in_flight)],
    unit="{request}",
    description="Requests in flight to FBR",
)
for _measure, _unit, _description in (
    ("pending", "{invoice}", "Invoices waiting for FBR (QUEUED, SENDING, RETRY_WAIT)"),
    ("in_doubt", "{invoice}", "Invoices in doubt, waiting for an operator"),
    ("stuck", "{invoice}", "Pending invoices older than the stuck threshold"),
    ("oldest_pending_age", "s", "Age of the oldest pending invoice (0 when none)"),
):
    _meter.create_observable_gauge(
        f"fbrhub.queue.{_measure}",
        callbacks=[queue_gauges.callback(_measure)],
        unit=_unit,
        description=_description,
    )
