"""The ready buffer: invoices claimed ahead of a free slot, started the moment pacing allows.

Claimed invoices wait in a small per-tenant buffer (``prefetch`` invoices beyond the
concurrency) and start the moment a request finishes and pacing allows, so a slot never
waits for a claim round trip. An invoice in the buffer holds a lease but has not been sent:
when the forwarder stops, its circuit opens or it waits too long, it is released back to the
queue (``Outbox.release``) with its attempt marked not sent. Only a crash leaves such
invoices to lease recovery, which puts them IN_DOUBT like the ones in flight: at most
``prefetch`` of them, never a blind resend.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, deque
from collections.abc import Callable

from server.invoices.claims import Claimed
from server.invoices.outbox import Outbox
from server.invoices.pacer import Pacer, endpoint_of


class ReadyBuffer:
    """Claimed invoices not yet sent: per tenant, oldest first.

    Attributes:
        count: invoices held.
        per_endpoint: invoices held per FBR endpoint.
    """

    def __init__(
        self,
        pacer: Pacer,
        outbox: Outbox,
        *,
        worker_id: str,
        lease_seconds: float,
        clock: Callable[[], dt.datetime],
        start: Callable[[Claimed, str], None],
    ) -> None:
        """Create an empty buffer.

        Args:
            pacer: decides whether a held invoice may start, and which circuits are closed.
            outbox: takes back the invoices released unsent.
            worker_id: the lease owner of the held invoices.
            lease_seconds: how long a claim holds; held invoices go back at half of it.
            clock: wall-clock time, the time claims and leases are measured in.
            start: sends one invoice to its endpoint.
        """
        self._pacer = pacer
        self._outbox = outbox
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._start = start
        self._queues: dict[uuid.UUID, deque[Claimed]] = {}
        self.count = 0
        self.per_endpoint: Counter[str] = Counter()

    def held(self, tenant_id: uuid.UUID) -> int:
        """How many of the tenant's invoices are held."""
        return len(self._queues.get(tenant_id, ()))

    def hold(self, claimed: list[Claimed]) -> None:
        """Add newly claimed invoices behind those already held."""
        for item in claimed:
            self._queues.setdefault(item.tenant.id, deque()).append(item)
            self.per_endpoint[endpoint_of(item.tenant)] += 1
        self.count += len(claimed)

    def start_allowed(self, free_slots: int) -> None:
        """Start held invoices in up to ``free_slots`` while pacing allows, tenants in turn."""
        progress = True
        while progress and self.count and free_slots > 0:
            progress = False
            for queue in self._queues.values():
                if not queue or free_slots <= 0:
                    continue
                claimed = queue[0]
                endpoint = endpoint_of(claimed.tenant)
                if self._pacer.may_start(claimed, endpoint):
                    queue.popleft()
                    self.count -= 1
                    self.per_endpoint[endpoint] -= 1
                    self._start(claimed, endpoint)
                    free_slots -= 1
                    progress = True

    def take(self, drop: Callable[[Claimed], bool]) -> list[Claimed]:
        """Remove and return the held invoices for which ``drop(claimed)``."""
        taken: list[Claimed] = []
        for queue in self._queues.values():
            kept: list[Claimed] = []
            for claimed in queue:
                (taken if drop(claimed) else kept).append(claimed)
            queue.clear()
            queue.extend(kept)
        for claimed in taken:
            self.per_endpoint[endpoint_of(claimed.tenant)] -= 1
        self.count -= len(taken)
        return taken

    async def release_unsendable(self) -> None:
        """Give back held invoices whose circuit is not closed or whose lease runs low."""
        if not self.count:
            return
        # Leases are database (wall-clock) time, like the claim time the outbox recorded.
        stale_before = self._clock() - dt.timedelta(seconds=self._lease_seconds / 2)
        blocked = {
            endpoint
            for endpoint, count in self.per_endpoint.items()
            if count and not self._pacer.circuit_closed(endpoint)
        }
        await self._release(
            self.take(
                lambda claimed: (
                    claimed.claimed_at < stale_before or endpoint_of(claimed.tenant) in blocked
                )
            )
        )

    async def release_all(self) -> None:
        """Give back every held invoice (the forwarder is stopping)."""
        await self._release(self.take(lambda _claimed: True))

    async def _release(self, claimed: list[Claimed]) -> None:
        if claimed:
            await self._outbox.release(claimed, worker_id=self._worker_id)
