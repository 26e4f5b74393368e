"""The outbox: the invoices table, seen from the delivery side.

An invoice moves through the outbox in three steps, each in its own module:

- :mod:`server.invoices.claims`: due invoices are claimed under a lease, with an attempt
  row committed before anything goes to FBR; claims never sent are released.
- :mod:`server.invoices.outcomes`: FBR's answers are recorded in batches (final, retry
  later, or in doubt).
- :mod:`server.invoices.leases`: SENDING invoices of a worker that died become IN_DOUBT
  once their lease expires, never sent again blindly.

:class:`Outbox` binds those steps to one database, notifier, clock and retry policy, so the
forwarder (and tools) call them without passing these along each time.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Mapping

from server.access.tenants import TenantProfile
from server.db.engine import Database
from server.db.notify import Notifier
from server.invoices.claims import (
    Claimed,
    claim_due_invoices,
    read_tenant_profiles,
    release_unsent_claims,
)
from server.invoices.leases import recover_expired_leases
from server.invoices.outcomes import Finished, RetryPolicy, record_outcomes


class Outbox:
    """Claims, records and recovers delivery attempts in the database."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        *,
        retry: RetryPolicy,
        clock: Callable[[], dt.datetime],
        rng: random.Random,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._retry = retry
        self._clock = clock
        self._rng = rng

    async def tenants(self) -> list[TenantProfile]:
        """Every tenant's delivery profile (tokens can be rotated: re-read periodically)."""
        return await read_tenant_profiles(self._db)

    async def claim(
        self,
        budgets: Mapping[uuid.UUID, int],
        *,
        worker_id: str,
        lease_seconds: float,
        profiles: Mapping[uuid.UUID, TenantProfile] | None = None,
    ) -> list[Claimed]:
        """Claim up to ``budgets[tenant]`` due invoices per tenant (:func:`claim_due_invoices`)."""
        return await claim_due_invoices(
            self._db,
            budgets,
            worker_id=worker_id,
            lease_seconds=lease_seconds,
            now=self._clock(),
            profiles=profiles,
        )

    async def record(self, batch: list[Finished]) -> None:
        """Write the outcomes of finished attempts in one transaction (:func:`record_outcomes`)."""
        await record_outcomes(
            self._db, self._notifier, batch, retry=self._retry, rng=self._rng, now=self._clock()
        )

    async def release(self, claimed: list[Claimed], *, worker_id: str) -> int:
        """Put unsent claims back in the queue; returns how many (:func:`release_unsent_claims`)."""
        return await release_unsent_claims(
            self._db, self._notifier, claimed, worker_id=worker_id, now=self._clock()
        )

    async def reclaim_expired_leases(self) -> int:
        """Move SENDING invoices past their lease to IN_DOUBT (:func:`recover_expired_leases`)."""
        return await recover_expired_leases(self._db, self._notifier, now=self._clock())
