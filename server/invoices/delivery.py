"""Delivery to FBR: the forwarder loop, paced per tenant and per FBR endpoint.

Each turn of the loop asks the :class:`~server.invoices.pacer.Pacer` how many invoices each
tenant may start now, then claims that many due invoices per tenant in one transaction
(:mod:`server.invoices.claims`). Claimed invoices wait in the
:class:`~server.invoices.ready_buffer.ReadyBuffer` and start from there the moment pacing
allows; the buffer is refilled in bulk once half of it has gone. Tenants are served
round-robin so one big backlog cannot starve the rest. Each answer feeds back into pacing
and goes to the :class:`~server.invoices.recorder.OutcomeRecorder`, which writes answers in
batches. While a circuit is open only probes go out, and ingest keeps accepting invoices,
which simply wait in the outbox.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from clients.fbr.channels import Channel
from clients.fbr.client import RequestNotSent
from clients.fbr.payload import to_fbr_json
from clients.fbr.pos.payload import to_ims_json
from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from server.access.tenants import TenantProfile
from server.clock import utcnow
from server.db.engine import Database
from server.db.notify import Notifier
from server.invoices.claims import Claimed
from server.invoices.forwarder_config import ForwarderConfig
from server.invoices.intake import INVOICES_TOPIC
from server.invoices.outbox import Outbox
from server.invoices.outcomes import Finished, RetryPolicy
from server.invoices.pacer import Pacer, endpoint_of, fbr_failing, health_signal
from server.invoices.pacing import BreakerChange, CircuitState
from server.invoices.ready_buffer import ReadyBuffer
from server.invoices.recorder import OutcomeRecorder
from server.invoices.tracing import attempt_span

__all__ = [
    "AlertSink",
    "FbrSender",
    "Forwarder",
    "ForwarderConfig",
    "endpoint_of",
    "fbr_failing",
    "health_signal",
]

logger = logging.getLogger(__name__)

AlertSink = Callable[[BreakerChange, list[uuid.UUID]], Awaitable[None]]
Post = Callable[..., Awaitable[DeliveryOutcome]]

NOT_SENDABLE = DeliveryOutcome(
    kind=OutcomeKind.REJECTED,
    http_status=None,
    error_message="The hub could not build FBR's request from this invoice (a number out of "
    "range): nothing was sent. Correct the invoice and retry it.",
    detail="not sent: request body could not be built",
)
"""The outcome of an invoice whose FBR body cannot be built: refused, and provably unsent."""


class FbrSender(Protocol):
    """What the forwarder needs of the FBR client (one method per FBR channel)."""

    async def post_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome: ...

    async def post_pos_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome: ...


class Forwarder:
    """Claims due invoices and delivers them to FBR, paced and bounded.

    Attributes:
        worker_id: the lease owner of this forwarder's claims.
        outbox: the claims, outcomes and lease recovery, bound to this hub's database.
        pacer: the adaptive limits, circuit breakers and token buckets.
    """

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
        self._clock = clock
        self._monotonic = monotonic
        self._on_circuit_change = on_circuit_change
        self.outbox = Outbox(
            db,
            notifier,
            retry=RetryPolicy(config.retry_base_seconds, config.retry_max_seconds),
            clock=clock,
            rng=rng or random.Random(),
        )
        self.pacer = Pacer(config, monotonic)
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._ready = ReadyBuffer(
            self.pacer,
            self.outbox,
            worker_id=self.worker_id,
            lease_seconds=config.lease_seconds,
            clock=clock,
            start=self._start,
        )
        self._recorder = OutcomeRecorder(self.outbox, notifier, self._stopping)
        self._tenants: list[TenantProfile] = []
        self._tenants_read_at = float("-inf")

    # -- helpers for tests and tools ----------------------------------------------------

    async def claim_due(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due invoices of any tenants, ignoring pacing (tools, tests)."""
        await self._refresh_tenants(force=True)
        claimed: list[Claimed] = []
        for tenant in self._tenants:
            if len(claimed) >= limit:
                break
            claimed += await self.outbox.claim(
                {tenant.id: limit - len(claimed)},
                worker_id=self.worker_id,
                lease_seconds=self._config.lease_seconds,
            )
        return claimed

    async def reclaim_expired_leases(self) -> int:
        """Move invoices whose lease expired to IN_DOUBT (see ``Outbox``)."""
        return await self.outbox.reclaim_expired_leases()

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until :meth:`stop` is called; then let in-flight sends finish."""
        self._recorder.start()
        next_reclaim = float("-inf")
        try:
            while not self._stopping.is_set():
                if self._monotonic() >= next_reclaim:
                    await self._guarded(self.outbox.reclaim_expired_leases())
                    next_reclaim = self._monotonic() + self._config.lease_seconds / 4
                await self._claim_and_start()
        finally:
            await self._guarded(self._ready.release_all())
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._recorder.close()

    async def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once in-flight attempts are recorded."""
        self._stopping.set()
        self._notifier.notify(INVOICES_TOPIC)

    async def _claim_and_start(self) -> None:
        """One turn: claim what pacing allows, start what can go, then wait for room or work."""
        await self._guarded(self._refresh_tenants())
        await self._guarded(self._ready.release_unsendable())
        self._start_ready()
        budgets = self.pacer.claim_budgets(
            self._tenants, in_flight=len(self._in_flight), ready=self._ready
        )
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
        self._ready.hold(claimed)
        self._start_ready()
        if claimed and len(claimed) == sum(budgets.values()):
            await self._wait_for_room()
        elif not claimed:
            # With no budget at all, what frees room is a send finishing (or tokens
            # refilling); with budget but nothing due, only new work or the clock.
            await self._idle(self.pacer.next_wake(self._tenants), on_completion=not budgets)

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
            and capacity - len(self._in_flight) - self._ready.count < refill_at
            and not self._stopping.is_set()
        ):
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    # -- sending ------------------------------------------------------------------------

    def _start_ready(self) -> None:
        """Send held invoices while slots are free and pacing allows."""
        if not self._stopping.is_set():  # once stopping, held invoices are released
            self._ready.start_allowed(self._config.concurrency - len(self._in_flight))

    def _start(self, claimed: Claimed, endpoint: str) -> None:
        self.pacer.started(claimed.tenant, endpoint)
        task = asyncio.create_task(self._deliver(claimed, endpoint))
        self._in_flight.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_ready()

    async def _deliver(self, claimed: Claimed, endpoint: str) -> None:
        started = self._monotonic()
        with attempt_span(claimed, endpoint) as attempt:
            outcome = await self._send(claimed)
            attempt.finish(outcome)
        latency = self._monotonic() - started
        change = self.pacer.finished(claimed.tenant, endpoint, outcome, latency)
        if change is not None:
            await self._announce(change, endpoint)
        self._recorder.add(Finished(claimed, outcome, self._clock(), attempt.trace_id))

    async def _send(self, claimed: Claimed) -> DeliveryOutcome:
        """Post the invoice on its channel; what FBR answered, or what is known of it."""
        try:
            post, body = self._request(claimed)
        except Exception as exc:
            # Nothing left the hub: the invoice is refused, never in doubt. Only the type is
            # logged: an exception message may quote the invoice.
            logger.error(
                "could not build the FBR request body of an invoice: %s", type(exc).__name__
            )
            return NOT_SENDABLE
        return await self._post(claimed, post, body)

    def _request(self, claimed: Claimed) -> tuple[Post, dict[str, Any]]:
        """The FBR call and body of a claimed invoice (bounded work, see clients.fbr.numbers)."""
        if claimed.channel is Channel.POS:
            return self._fbr.post_pos_invoice, to_ims_json(claimed.body)
        return self._fbr.post_invoice, to_fbr_json(claimed.body)

    async def _post(self, claimed: Claimed, post: Post, body: dict[str, Any]) -> DeliveryOutcome:
        try:
            return await post(
                body,
                token=claimed.tenant.fbr_token,
                environment=claimed.tenant.fbr_environment,
                request_id=str(claimed.invoice_id),
            )
        except RequestNotSent as exc:
            logger.error("FBR request not sent: %s", exc)
            return NOT_SENDABLE
        except Exception:
            # The client maps every transport failure to an outcome; anything else is a bug,
            # and whether a request went out is unknown, so the invoice is in doubt.
            logger.exception("unexpected error delivering an invoice")
            return DeliveryOutcome(
                kind=OutcomeKind.IN_DOUBT, http_status=None, detail="internal error while sending"
            )

    async def _announce(self, change: BreakerChange, endpoint: str) -> None:
        """Log a circuit change, wake the loop when it closed, and raise the alert."""
        if change.state is CircuitState.OPEN:
            logger.warning(
                "FBR circuit %s opened after %d failures",
                endpoint,
                change.consecutive_failures,
                extra={"endpoint": endpoint, "count": change.consecutive_failures},
            )
        else:
            logger.info(
                "FBR circuit %s closed; delivery resumes", endpoint, extra={"endpoint": endpoint}
            )
            self._notifier.notify(INVOICES_TOPIC)
        if self._on_circuit_change is not None:
            tenants = [t.id for t in self._tenants if endpoint_of(t) == endpoint]
            try:
                await self._on_circuit_change(change, tenants)
            except Exception:
                logger.exception("could not record a circuit alert")
