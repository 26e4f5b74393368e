"""The forwarder's pacing state: how much may go to FBR now, per endpoint and per tenant.

Each turn of the forwarder's loop asks, for every tenant, how many invoices it may claim:

    budget = min(room under the global concurrency,
                 room under the endpoint's adaptive (AIMD) limit,
                 what the endpoint's circuit breaker allows (all / one probe / none),
                 room under the tenant's concurrency limit,
                 tokens in the tenant's bucket)

:class:`Pacer` owns the primitives of :mod:`server.invoices.pacing` behind that formula (one
adaptive limit and one circuit breaker per FBR endpoint, one token bucket per tenant) and
the in-flight counters, and is told when a request starts and finishes. Outcomes feed back:
overload (429, no answer, or an answer slower than the latency target) halves the adaptive
limit, and failures (429, 5xx, no answer) count toward opening the circuit; while a circuit
is open only probes go out.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from server.access.tenants import TenantProfile
from server.invoices.forwarder_config import ForwarderConfig
from server.invoices.pacing import (
    AdaptiveLimit,
    BreakerChange,
    CircuitBreaker,
    CircuitState,
    Signal,
    TokenBucket,
)
from server.observability import metrics
from server.observability.semconv import FBR_ENDPOINT, FBR_ERROR_CODE, FBR_OUTCOME

if TYPE_CHECKING:
    from server.invoices.claims import Claimed
    from server.invoices.ready_buffer import ReadyBuffer


def endpoint_of(tenant: TenantProfile) -> str:
    """The FBR endpoint a tenant's invoices go to (one breaker and limit per endpoint)."""
    return f"{tenant.channel}:{tenant.fbr_environment}"


def health_signal(outcome: DeliveryOutcome) -> Signal:
    """What an outcome says about FBR's load, for the adaptive limit.

    Only throttling (429) and no answer at all (timeouts, refused or dropped connections)
    mean "send less"; a stray 5xx says little about load (a 2% error rate would otherwise
    keep halving the limit), and a run of them is the circuit breaker's job.
    """
    if outcome.kind in (OutcomeKind.ACCEPTED, OutcomeKind.REJECTED):
        return Signal.GOOD
    status = outcome.http_status
    if status is None or status == 429:
        return Signal.OVERLOAD
    return Signal.NEUTRAL


def fbr_failing(outcome: DeliveryOutcome) -> bool | None:
    """For the circuit breaker: True if FBR failed, False if it answered, None if unclear."""
    if outcome.kind in (OutcomeKind.ACCEPTED, OutcomeKind.REJECTED):
        return False
    status = outcome.http_status
    if status is None or status == 429 or status >= 500:
        return True
    return None


class Pacer:
    """Limits, breakers, token buckets and in-flight counts of one forwarder.

    Attributes:
        limits: the adaptive limit of each endpoint seen so far.
        breakers: the circuit breaker of each endpoint seen so far.
    """

    def __init__(self, config: ForwarderConfig, monotonic: Callable[[], float]) -> None:
        self._config = config
        self._monotonic = monotonic
        self.limits: dict[str, AdaptiveLimit] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self._buckets: dict[uuid.UUID, TokenBucket] = {}
        self._per_tenant: Counter[uuid.UUID] = Counter()
        self._per_endpoint: Counter[str] = Counter()
        self._turn = 0

    def _limit(self, endpoint: str) -> AdaptiveLimit:
        limit = self.limits.get(endpoint)
        if limit is None:
            limit = self.limits[endpoint] = AdaptiveLimit(
                maximum=self._config.concurrency,
                latency_target=self._config.latency_target_seconds,
                clock=self._monotonic,
            )
        return limit

    def _breaker(self, endpoint: str) -> CircuitBreaker:
        breaker = self.breakers.get(endpoint)
        if breaker is None:
            breaker = self.breakers[endpoint] = CircuitBreaker(
                endpoint,
                failure_threshold=self._config.breaker_failure_threshold,
                open_seconds=self._config.breaker_open_seconds,
                max_open_seconds=self._config.breaker_max_open_seconds,
                clock=self._monotonic,
            )
        return breaker

    def _bucket(self, tenant: TenantProfile) -> TokenBucket:
        bucket = self._buckets.get(tenant.id)
        if bucket is None:
            bucket = self._buckets[tenant.id] = TokenBucket(
                self._config.tenant_rate_per_second, self._config.tenant_burst, self._monotonic
            )
        return bucket

    def claim_budgets(
        self, tenants: list[TenantProfile], *, in_flight: int, ready: ReadyBuffer
    ) -> dict[uuid.UUID, int]:
        """How many invoices each tenant may claim now (round-robin from a rotating start).

        Claims fill the slots under every limit plus the ready buffer; an endpoint whose
        circuit is not closed gets nothing but its one probe, and nothing held ready.

        Args:
            tenants: every tenant, in a stable order.
            in_flight: requests in flight now.
            ready: the invoices already claimed and waiting to start.
        """
        config = self._config
        room = config.concurrency + config.ready_size - in_flight - ready.count
        endpoint_room: dict[str, int] = {}
        extras: dict[str, int] = {}
        budgets: dict[uuid.UUID, int] = {}
        if room <= 0 or not tenants:
            return budgets
        start = self._turn % len(tenants)
        self._turn += 1
        for tenant in tenants[start:] + tenants[:start]:
            endpoint = endpoint_of(tenant)
            if endpoint not in endpoint_room:
                endpoint_room[endpoint], extras[endpoint] = self._endpoint_room(endpoint, ready)
            held = ready.held(tenant.id)
            budget = min(
                room,
                endpoint_room[endpoint],
                config.tenant_cap + extras[endpoint] - self._per_tenant[tenant.id] - held,
                self._bucket(tenant).available() - held,
                config.claim_batch,
            )
            if budget > 0:
                budgets[tenant.id] = budget
                room -= budget
                endpoint_room[endpoint] -= budget
            if room <= 0:
                break
        return budgets

    def _endpoint_room(self, endpoint: str, ready: ReadyBuffer) -> tuple[int, int]:
        """How many more invoices the endpoint may take, and how many of them may wait ready."""
        allowance = self._breaker(endpoint).allowance()
        # Hold invoices ready only toward a healthy endpoint; otherwise claim just the probe,
        # and only when it can go out at once.
        extra = self._config.ready_size if allowance < 0 else 0
        free = (
            self._limit(endpoint).limit
            + extra
            - self._per_endpoint[endpoint]
            - ready.per_endpoint[endpoint]
        )
        return (free if allowance < 0 else min(free, allowance)), extra

    def may_start(self, claimed: Claimed, endpoint: str) -> bool:
        """Whether pacing lets this claimed invoice go out now."""
        tenant = claimed.tenant
        return (
            self._breaker(endpoint).allowance() != 0
            and self._per_endpoint[endpoint] < self._limit(endpoint).limit
            and self._per_tenant[tenant.id] < self._config.tenant_cap
            and self._bucket(tenant).available() > 0
        )

    def circuit_closed(self, endpoint: str) -> bool:
        """Whether the endpoint's circuit is closed (not open, not probing)."""
        return self._breaker(endpoint).state is CircuitState.CLOSED

    def next_wake(self, tenants: Sequence[TenantProfile]) -> float:
        """Seconds until pacing could allow more work (tokens refill, a probe is due)."""
        waits = [self._config.poll_seconds]
        waits += [
            b.seconds_until_probe() for b in self.breakers.values() if b.seconds_until_probe()
        ]
        waits += [
            self._buckets[t.id].seconds_until()
            for t in tenants
            if t.id in self._buckets and self._buckets[t.id].available() == 0
        ]
        return max(0.005, min(waits))

    def started(self, tenant: TenantProfile, endpoint: str) -> None:
        """Count a request that starts now: in flight, a token spent, maybe the probe."""
        self._per_tenant[tenant.id] += 1
        self._per_endpoint[endpoint] += 1
        self._bucket(tenant).take(1)
        self._breaker(endpoint).started(1)
        metrics.in_flight[endpoint] = self._per_endpoint[endpoint]

    def finished(
        self, tenant: TenantProfile, endpoint: str, outcome: DeliveryOutcome, latency: float
    ) -> BreakerChange | None:
        """Count a finished request and learn from its outcome; returns a circuit change."""
        self._per_tenant[tenant.id] -= 1
        self._per_endpoint[endpoint] -= 1
        limit = self._limit(endpoint)
        limit.record(health_signal(outcome), latency)
        attributes: dict[str, str | int] = {
            FBR_ENDPOINT: endpoint,
            FBR_OUTCOME: outcome.kind.name.lower(),
            FBR_ERROR_CODE: outcome.error_code or "",
        }
        if outcome.http_status is not None:  # absent when FBR never answered
            attributes[HTTP_RESPONSE_STATUS_CODE] = outcome.http_status
        metrics.fbr_requests.add(1, attributes)
        metrics.adaptive_limits[endpoint] = limit.limit
        metrics.in_flight[endpoint] = self._per_endpoint[endpoint]
        failing = fbr_failing(outcome)
        if failing is None:
            return None
        breaker = self._breaker(endpoint)
        change = breaker.record(not failing)
        metrics.circuit_states[endpoint] = metrics.CIRCUIT_STATE_VALUE[breaker.state.value]
        return change
