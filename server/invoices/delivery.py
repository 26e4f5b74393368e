"""Delivery to FBR: the forwarder loop, paced per tenant and per FBR endpoint (DESIGN §2.3-2.4).

Each turn of the loop works out, for every tenant, how many invoices it may start now:

    budget = min(room under the global concurrency,
                 room under the endpoint's adaptive (AIMD) limit,
                 what the endpoint's circuit breaker allows (all / one probe / none),
                 room under the tenant's concurrency limit,
                 tokens in the tenant's bucket)

then claims that many due invoices per tenant in one transaction (``server.invoices.outbox``).
Claimed invoices wait in a small per-tenant *ready* buffer (``prefetch`` invoices beyond the
concurrency) and start the moment a request finishes and pacing allows, so a slot never
waits for a claim round trip; the buffer is refilled in bulk once half of it has gone. An
invoice in the buffer holds a lease but has not been sent: when the stop comes, its circuit
opens or it waits too long, it is released back to the queue (``Outbox.release``) with its
attempt marked not sent. Only a crash leaves such invoices to lease recovery, which puts them
IN_DOUBT like the ones in flight: at most ``prefetch`` of them, never a blind resend.
Tenants are served round-robin so one big backlog cannot starve the rest.
Outcomes feed back: overload signals (429, 5xx, timeouts) halve the adaptive limit and count
toward opening the circuit; while a circuit is open only probes go out, and ingest keeps
accepting invoices, which simply wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from clients.fbr.payload import to_fbr_json
from clients.fbr.pos.payload import to_ims_json
from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from server.access.tenants import TenantProfile
from server.db.engine import Database
from server.db.notify import Notifier
from server.invoices.claims import Claimed
from server.invoices.clock import utcnow
from server.invoices.intake import INVOICES_TOPIC
from server.invoices.outbox import Outbox
from server.invoices.outcomes import Finished, RetryPolicy
from server.invoices.pacing import (
    AdaptiveLimit,
    BreakerChange,
    CircuitBreaker,
    CircuitState,
    Signal,
    TokenBucket,
)
from server.observability import metrics

logger = logging.getLogger(__name__)


class FbrSender(Protocol):
    """What the forwarder needs of the FBR client (one method per FBR channel)."""

    async def post_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome: ...

    async def post_pos_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome: ...


@dataclass(frozen=True)
class ForwarderConfig:
    """Tuning of the forwarder (see README "Delivery limits").

    Attributes:
        concurrency: most requests in flight to FBR from this process, and the ceiling of
            each endpoint's adaptive limit.
        prefetch: claimed invoices held ready beyond ``concurrency`` so that a finished
            request is replaced at once; ``None`` is half of ``concurrency`` (at least 16).
        claim_batch: most invoices claimed per tenant per transaction.
        poll_seconds: longest sleep when nothing is due (new ingest wakes it earlier).
        lease_seconds: how long a claim holds; must exceed the FBR read timeout.
        retry_base_seconds: first backoff step for retryable failures.
        retry_max_seconds: backoff cap.
        tenant_rate_per_second: token-bucket rate per tenant (FBR credential); 0 = unlimited.
        tenant_burst: token-bucket size per tenant.
        tenant_concurrency: most requests in flight per tenant; 0 = ``concurrency``.
        latency_target_seconds: answers slower than this count as overload for AIMD.
        breaker_failure_threshold: consecutive failures that open an endpoint's circuit.
        breaker_open_seconds: first open period before a probe.
        breaker_max_open_seconds: cap of the doubling open period.
        tenant_refresh_seconds: how often tenant profiles (tokens, limits) are re-read.
    """

    concurrency: int = 64
    prefetch: int | None = None
    claim_batch: int = 200
    poll_seconds: float = 0.5
    lease_seconds: float = 60.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    tenant_rate_per_second: float = 0.0
    tenant_burst: float = 50.0
    tenant_concurrency: int = 0
    latency_target_seconds: float = 5.0
    breaker_failure_threshold: int = 5
    breaker_open_seconds: float = 1.0
    breaker_max_open_seconds: float = 60.0
    tenant_refresh_seconds: float = 5.0

    @property
    def ready_size(self) -> int:
        """How many claimed invoices may wait for a free slot."""
        if self.prefetch is not None:
            return max(0, self.prefetch)
        # Half the window: a claim takes a few event-loop turns per statement under load
        # (~60 ms at 900 answers/s), and the buffer must not run dry while it runs.
        return max(16, self.concurrency // 2)


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


# Outcomes are recorded in batches: wait this long for more when fewer than the target wait.
RECORD_LINGER_SECONDS = 0.02
RECORD_BATCH_TARGET = 32

AlertSink = Callable[[BreakerChange, list[uuid.UUID]], Awaitable[None]]


class Forwarder:
    """Claims due invoices and delivers them to FBR, paced and bounded."""

    def __init__(
        self,
        db: Database,
        fbr: FbrSender,
        notifier: Notifier,
        config: ForwarderConfig,
        *,
        worker_id: str | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_circuit_change: AlertSink | None = None,
    ) -> None:
        self._fbr = fbr
        self._notifier = notifier
        self._config = config
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._monotonic = monotonic
        self.outbox = Outbox(
            db,
            notifier,
            retry=RetryPolicy(config.retry_base_seconds, config.retry_max_seconds),
            clock=clock,
            rng=rng or random.Random(),
        )
        self._clock = clock
        self._on_circuit_change = on_circuit_change
        self._in_flight: set[asyncio.Task[None]] = set()
        self._per_tenant: Counter[uuid.UUID] = Counter()
        self._per_endpoint: Counter[str] = Counter()
        # Claimed, not yet sent: per tenant, oldest first.
        self._ready: dict[uuid.UUID, deque[Claimed]] = {}
        self._ready_count = 0
        self._ready_per_endpoint: Counter[str] = Counter()
        self._finished: asyncio.Queue[Finished] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._tenants: list[TenantProfile] = []
        self._tenants_read_at = float("-inf")
        self._turn = 0
        self._buckets: dict[uuid.UUID, TokenBucket] = {}
        self.limits: dict[str, AdaptiveLimit] = {}
        self.breakers: dict[str, CircuitBreaker] = {}

    # -- compatibility helpers used by tests and tools ---------------------------------

    async def claim_due(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due invoices of any tenants, ignoring pacing (tools, tests)."""
        await self._refresh_tenants(force=True)
        budgets = {t.id: limit for t in self._tenants}
        claimed: list[Claimed] = []
        for tenant_id, budget in budgets.items():
            if len(claimed) >= limit:
                break
            claimed += await self.outbox.claim(
                {tenant_id: min(budget, limit - len(claimed))},
                worker_id=self.worker_id,
                lease_seconds=self._config.lease_seconds,
            )
        return claimed

    async def reclaim_expired_leases(self) -> int:
        """Move invoices whose lease expired to IN_DOUBT (see ``Outbox``)."""
        return await self.outbox.reclaim_expired_leases()

    # -- pacing -------------------------------------------------------------------------

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

    def _tenant_cap(self) -> int:
        return self._config.tenant_concurrency or self._config.concurrency

    def budgets(self) -> dict[uuid.UUID, int]:
        """How many invoices each tenant may claim now (round-robin from a rotating start).

        Claims fill the slots under every limit plus the ready buffer; an endpoint whose
        circuit is not closed gets nothing but its one probe, and nothing held ready.
        """
        config = self._config
        room = config.concurrency + config.ready_size - len(self._in_flight) - self._ready_count
        endpoint_room: dict[str, int] = {}
        extras: dict[str, int] = {}
        budgets: dict[uuid.UUID, int] = {}
        if room <= 0 or not self._tenants:
            return budgets
        start = self._turn % len(self._tenants)
        self._turn += 1
        for tenant in self._tenants[start:] + self._tenants[:start]:
            endpoint = endpoint_of(tenant)
            if endpoint not in endpoint_room:
                allowance = self._breaker(endpoint).allowance()
                # Hold invoices ready only toward a healthy endpoint; otherwise claim just
                # the probe, and only when it can go out at once.
                extras[endpoint] = config.ready_size if allowance < 0 else 0
                free = (
                    self._limit(endpoint).limit
                    + extras[endpoint]
                    - self._per_endpoint[endpoint]
                    - self._ready_per_endpoint[endpoint]
                )
                endpoint_room[endpoint] = free if allowance < 0 else min(free, allowance)
            ready = len(self._ready.get(tenant.id, ()))
            budget = min(
                room,
                endpoint_room[endpoint],
                self._tenant_cap() + extras[endpoint] - self._per_tenant[tenant.id] - ready,
                self._bucket(tenant).available() - ready,
                config.claim_batch,
            )
            if budget > 0:
                budgets[tenant.id] = budget
                room -= budget
                endpoint_room[endpoint] -= budget
            if room <= 0:
                break
        return budgets

    def _may_start(self, claimed: Claimed, endpoint: str) -> bool:
        """Whether pacing lets this claimed invoice go out now."""
        tenant = claimed.tenant
        return (
            self._breaker(endpoint).allowance() != 0
            and self._per_endpoint[endpoint] < self._limit(endpoint).limit
            and self._per_tenant[tenant.id] < self._tenant_cap()
            and self._bucket(tenant).available() > 0
        )

    def _next_wake(self) -> float:
        """Seconds until pacing could allow more work (tokens refill, a probe is due)."""
        waits = [self._config.poll_seconds]
        waits += [
            b.seconds_until_probe() for b in self.breakers.values() if b.seconds_until_probe()
        ]
        waits += [
            self._buckets[t.id].seconds_until()
            for t in self._tenants
            if t.id in self._buckets and self._buckets[t.id].available() == 0
        ]
        return max(0.005, min(waits))

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until :meth:`stop` is called; then let in-flight sends finish."""
        recorder = asyncio.create_task(self._record_loop(), name="forwarder-recorder")
        next_reclaim = float("-inf")
        try:
            while not self._stopping.is_set():
                if self._monotonic() >= next_reclaim:
                    await self._guarded(self.outbox.reclaim_expired_leases())
                    next_reclaim = self._monotonic() + self._config.lease_seconds / 4
                await self._guarded(self._refresh_tenants())
                await self._guarded(self._release_unsendable())
                self._start_ready()
                budgets = self.budgets()
                claimed: list[Claimed] = []
                if budgets:
                    claimed = (
                        await self._guarded(
                            self.outbox.claim(
                                budgets,
                                worker_id=self.worker_id,
                                lease_seconds=self._config.lease_seconds,
                                profiles={t.id: t for t in self._tenants},
                            )
                        )
                        or []
                    )
                self._hold(claimed)
                self._start_ready()
                if claimed and len(claimed) == sum(budgets.values()):
                    await self._wait_for_room()
                elif not claimed:
                    # With no budget at all, what frees room is a send finishing (or tokens
                    # refilling); with budget but nothing due, only new work or the clock.
                    await self._idle(self._next_wake(), on_completion=not budgets)
        finally:
            await self._guarded(self._release(self._take_ready(lambda _claimed: True)))
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._finished.join()
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder

    async def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once in-flight attempts are recorded."""
        self._stopping.set()
        self._notifier.notify(INVOICES_TOPIC)

    async def _refresh_tenants(self, *, force: bool = False) -> None:
        if (
            force
            or self._monotonic() - self._tenants_read_at >= self._config.tenant_refresh_seconds
        ):
            self._tenants = await self.outbox.tenants()
            self._tenants_read_at = self._monotonic()

    async def _guarded(self, work: Awaitable[Any]) -> Any:
        try:
            return await work
        except Exception:
            logger.exception("forwarder database step failed; retrying shortly")
            await asyncio.sleep(self._config.poll_seconds)
            return None

    async def _idle(self, timeout: float, *, on_completion: bool = False) -> None:
        wake = asyncio.create_task(self._notifier.wait(INVOICES_TOPIC, timeout))
        stop = asyncio.create_task(self._stopping.wait())
        waiters: set[asyncio.Task[Any]] = {wake, stop}
        if on_completion:
            waiters |= self._in_flight
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in (wake, stop):
            task.cancel()

    async def _wait_for_room(self) -> None:
        # Refill in bulk: claim again once half the ready buffer has gone out (a quarter of
        # the window when there is no buffer), not once per send.
        config = self._config
        refill_at = max(1, config.ready_size // 2 or config.concurrency // 4)
        capacity = config.concurrency + config.ready_size
        while (
            self._in_flight
            and capacity - len(self._in_flight) - self._ready_count < refill_at
            and not self._stopping.is_set()
        ):
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    # -- the ready buffer ---------------------------------------------------------------

    def _hold(self, claimed: list[Claimed]) -> None:
        for item in claimed:
            self._ready.setdefault(item.tenant.id, deque()).append(item)
            self._ready_per_endpoint[endpoint_of(item.tenant)] += 1
        self._ready_count += len(claimed)

    def _start_ready(self) -> None:
        """Send held invoices while slots are free and pacing allows, tenants in turn."""
        concurrency = self._config.concurrency
        progress = not self._stopping.is_set()  # once stopping, held invoices are released
        while progress and self._ready_count and len(self._in_flight) < concurrency:
            progress = False
            for queue in self._ready.values():
                if not queue or len(self._in_flight) >= concurrency:
                    continue
                claimed = queue[0]
                endpoint = endpoint_of(claimed.tenant)
                if self._may_start(claimed, endpoint):
                    queue.popleft()
                    self._ready_count -= 1
                    self._ready_per_endpoint[endpoint] -= 1
                    self._start(claimed, endpoint)
                    progress = True

    def _take_ready(self, drop: Callable[[Claimed], bool]) -> list[Claimed]:
        """Remove and return the held invoices for which ``drop(claimed)``."""
        taken: list[Claimed] = []
        for queue in self._ready.values():
            kept: list[Claimed] = []
            for claimed in queue:
                (taken if drop(claimed) else kept).append(claimed)
            queue.clear()
            queue.extend(kept)
        for claimed in taken:
            self._ready_per_endpoint[endpoint_of(claimed.tenant)] -= 1
        self._ready_count -= len(taken)
        return taken

    async def _release_unsendable(self) -> None:
        """Give back held invoices whose circuit is not closed or whose lease runs low."""
        if not self._ready_count:
            return
        # Leases are database (wall-clock) time, like the claim time the outbox recorded.
        stale_before = self._clock() - dt.timedelta(seconds=self._config.lease_seconds / 2)
        blocked = {
            endpoint
            for endpoint, count in self._ready_per_endpoint.items()
            if count and self._breaker(endpoint).state is not CircuitState.CLOSED
        }
        await self._release(
            self._take_ready(
                lambda claimed: (
                    claimed.claimed_at < stale_before or endpoint_of(claimed.tenant) in blocked
                )
            )
        )

    async def _release(self, claimed: list[Claimed]) -> None:
        if claimed:
            await self.outbox.release(claimed, worker_id=self.worker_id)

    # -- sending ------------------------------------------------------------------------

    def _start(self, claimed: Claimed, endpoint: str) -> None:
        self._per_tenant[claimed.tenant.id] += 1
        self._per_endpoint[endpoint] += 1
        self._bucket(claimed.tenant).take(1)
        self._breaker(endpoint).started(1)
        metrics.in_flight[endpoint] = self._per_endpoint[endpoint]
        task = asyncio.create_task(self._deliver(claimed, endpoint))
        self._in_flight.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_ready()

    async def _deliver(self, claimed: Claimed, endpoint: str) -> None:
        started = self._monotonic()
        try:
            if claimed.body.get("channel") == "pos":
                post, body = self._fbr.post_pos_invoice, to_ims_json(claimed.body)
            else:
                post, body = self._fbr.post_invoice, to_fbr_json(claimed.body)
            outcome = await post(
                body,
                token=claimed.tenant.fbr_token,
                environment=claimed.tenant.fbr_environment,
                request_id=str(claimed.invoice_id),
            )
        except Exception:
            # The client maps every transport failure to an outcome; anything else is a bug,
            # and whether a request went out is unknown, so the invoice is in doubt.
            logger.exception("unexpected error delivering an invoice")
            outcome = DeliveryOutcome(
                kind=OutcomeKind.IN_DOUBT, http_status=None, detail="internal error while sending"
            )
        latency = self._monotonic() - started
        self._per_tenant[claimed.tenant.id] -= 1
        self._per_endpoint[endpoint] -= 1
        await self._observe(endpoint, outcome, latency)
        await self._finished.put(Finished(claimed, outcome, self._clock()))

    async def _observe(self, endpoint: str, outcome: DeliveryOutcome, latency: float) -> None:
        signal = health_signal(outcome)
        limit = self._limit(endpoint)
        limit.record(signal, latency)
        attributes = {
            "endpoint": endpoint,
            "outcome": outcome.kind.name.lower(),
            "http_status": str(outcome.http_status or 0),
            "fbr_error_code": outcome.error_code or "",
        }
        metrics.fbr_requests.add(1, attributes)
        metrics.fbr_request_duration.record(latency, {"endpoint": endpoint})
        metrics.adaptive_limits[endpoint] = limit.limit
        metrics.in_flight[endpoint] = self._per_endpoint[endpoint]
        failing = fbr_failing(outcome)
        if failing is None:
            return
        breaker = self._breaker(endpoint)
        change = breaker.record(not failing)
        metrics.circuit_states[endpoint] = metrics.CIRCUIT_STATE_VALUE[breaker.state.value]
        if change is not None:
            if change.state is CircuitState.OPEN:
                logger.warning(
                    "FBR circuit %s opened after %d failures", endpoint, change.consecutive_failures
                )
            else:
                logger.info("FBR circuit %s closed; delivery resumes", endpoint)
                self._notifier.notify(INVOICES_TOPIC)
            if self._on_circuit_change is not None:
                tenants = [t.id for t in self._tenants if endpoint_of(t) == endpoint]
                try:
                    await self._on_circuit_change(change, tenants)
                except Exception:
                    logger.exception("could not record a circuit alert")

    # -- recording ----------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._finished.get()]
            if self._finished.qsize() < RECORD_BATCH_TARGET and not self._stopping.is_set():
                # A recording transaction has a fixed cost of a few ms, so at modest rates
                # one per answer would dominate the forwarder's CPU: let answers gather.
                await asyncio.sleep(RECORD_LINGER_SECONDS)
            while not self._finished.empty() and len(batch) < 500:
                batch.append(self._finished.get_nowait())
            while True:
                try:
                    await self.outbox.record(batch)
                    break
                except Exception:
                    logger.exception("recording delivery outcomes failed; retrying")
                    await asyncio.sleep(1.0)
            if any(f.outcome.kind is OutcomeKind.RETRYABLE for f in batch):
                self._notifier.notify(INVOICES_TOPIC)
            for _ in batch:
                self._finished.task_done()
