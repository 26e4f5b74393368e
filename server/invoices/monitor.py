"""Nothing silent: queue health, stuck-work and circuit alerts.

:func:`queue_health` summarises each tenant's outbox (counts by state, oldest pending
invoice, invoices pending longer than the stuck threshold). :class:`QueueMonitor` runs it
periodically in the process that speaks for the cluster (:mod:`server.invoices.leadership`):
it publishes the queue gauges for every tenant (zero once a queue drains) and, when a tenant
has stuck or in-doubt invoices, writes an ALERT event to that tenant's results stream (again
whenever the numbers change, and at least every ``repeat`` intervals while they persist).
Other processes publish no queue gauges at all, so each queue is reported once.
Circuit-breaker changes become ALERT events too (:func:`record_circuit_alert`).
``fbrhub status`` prints the same summary as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.clock import utcnow
from server.db.engine import Database, mark_work
from server.db.models import Invoice, InvoiceState, ResultEvent, Tenant
from server.db.notify import Notifier
from server.invoices.intake import PENDING_STATES
from server.invoices.leadership import MONITOR_LOCK_ID, Leadership
from server.invoices.pacing import BreakerChange, CircuitState
from server.invoices.results import NewResult, ResultKind, append_results, results_topic
from server.observability import metrics

logger = logging.getLogger(__name__)

# What the periodic check counts: invoices that still need the hub or an operator.
UNSETTLED_STATES = (*PENDING_STATES, InvoiceState.IN_DOUBT.value)


@dataclass
class TenantQueueHealth:
    """One tenant's outbox at a glance.

    Attributes:
        tenant_id: the tenant.
        by_state: invoice counts by state (all states present are listed).
        oldest_pending_age_seconds: age of the oldest QUEUED/SENDING/RETRY_WAIT invoice.
        stuck: pending invoices older than the stuck threshold.
    """

    tenant_id: uuid.UUID
    by_state: dict[str, int] = field(default_factory=dict)
    oldest_pending_age_seconds: float = 0.0
    stuck: int = 0

    @property
    def pending(self) -> int:
        """Invoices not yet in a final state (IN_DOUBT excluded: it needs a person)."""
        return sum(self.by_state.get(s, 0) for s in PENDING_STATES)

    @property
    def in_doubt(self) -> int:
        """Invoices waiting for an operator."""
        return self.by_state.get(InvoiceState.IN_DOUBT.value, 0)


async def queue_health(
    session: AsyncSession,
    now: dt.datetime,
    stuck_after_seconds: float,
    *,
    include_settled: bool = True,
) -> list[TenantQueueHealth]:
    """Summarise every tenant's invoices by state, with pending age and stuck counts.

    Args:
        session: where to read.
        now: the time ages are measured from.
        stuck_after_seconds: pending longer than this counts as stuck.
        include_settled: also count ACCEPTED and the rejected states. That reads every
            invoice ever kept (years of them), so the periodic monitor leaves them out and
            reads only the unsettled ones through the state index; ``fbrhub status`` asks.
    """
    health: dict[uuid.UUID, TenantQueueHealth] = {}
    by_state = select(Invoice.tenant_id, Invoice.state, func.count()).group_by(
        Invoice.tenant_id, Invoice.state
    )
    if not include_settled:
        by_state = by_state.where(Invoice.state.in_(UNSETTLED_STATES))
    rows = await session.execute(by_state)
    for tenant_id, state, count in rows:
        health.setdefault(tenant_id, TenantQueueHealth(tenant_id)).by_state[state] = count
    cutoff = now - dt.timedelta(seconds=stuck_after_seconds)
    pending = await session.execute(
        select(
            Invoice.tenant_id,
            func.min(Invoice.created_at),
            func.count().filter(Invoice.created_at < cutoff),
        )
        .where(Invoice.state.in_(PENDING_STATES))
        .group_by(Invoice.tenant_id)
    )
    for tenant_id, oldest, stuck in pending:
        entry = health.setdefault(tenant_id, TenantQueueHealth(tenant_id))
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=dt.UTC)
            entry.oldest_pending_age_seconds = max(0.0, (now - oldest).total_seconds())
        entry.stuck = int(stuck or 0)
    return sorted(health.values(), key=lambda h: str(h.tenant_id))


async def latest_circuit_alerts(session: AsyncSession) -> dict[str, dict[str, Any]]:
    """The last circuit alert per FBR endpoint (from any tenant's stream)."""
    rows = await session.scalars(
        select(ResultEvent)
        .where(ResultEvent.kind == ResultKind.ALERT.value)
        .order_by(ResultEvent.created_at.desc())
        .limit(500)
    )
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        alert = row.data.get("alert", {})
        endpoint = alert.get("endpoint")
        if endpoint and endpoint not in latest:
            latest[endpoint] = {**alert, "time": row.created_at}
    return latest


def _alert(
    kind: str, detail: str, *, count: int = 0, age: float = 0.0, endpoint: str = ""
) -> dict[str, Any]:
    return {
        "alert": {
            "kind": kind,
            "invoice_count": count,
            "oldest_age_seconds": round(age, 3),
            "endpoint": endpoint,
            "detail": detail,
        }
    }


async def record_circuit_alert(
    db: Database, notifier: Notifier, change: BreakerChange, tenant_ids: list[uuid.UUID]
) -> None:
    """Write a circuit open/closed alert to the results stream of every affected tenant."""
    if not tenant_ids:
        return
    opened = change.state is CircuitState.OPEN
    data = _alert(
        "FBR_CIRCUIT_OPEN" if opened else "FBR_CIRCUIT_CLOSED",
        f"FBR is failing ({change.consecutive_failures} failures in a row): only probes are "
        "sent; invoices keep queueing"
        if opened
        else "FBR answers again: delivery resumed",
        endpoint=change.endpoint,
    )
    now = utcnow()
    async with db.write("monitor.circuit_alert") as session:
        await append_results(
            session, [NewResult(t, None, ResultKind.ALERT, data) for t in tenant_ids], now
        )
    for tenant_id in tenant_ids:
        notifier.notify(results_topic(tenant_id))


def queue_snapshot(
    tenant_ids: list[uuid.UUID], health: list[TenantQueueHealth]
) -> dict[tuple[str, str], float]:
    """The queue gauges of every tenant: ``(tenant id, measure) -> value``, 0 when drained."""
    by_tenant = {entry.tenant_id: entry for entry in health}
    snapshot: dict[tuple[str, str], float] = {}
    for tenant_id in tenant_ids:
        entry = by_tenant.get(tenant_id, TenantQueueHealth(tenant_id))
        tenant = str(tenant_id)
        snapshot[tenant, "pending"] = entry.pending
        snapshot[tenant, "in_doubt"] = entry.in_doubt
        snapshot[tenant, "stuck"] = entry.stuck
        snapshot[tenant, "oldest_pending_age"] = entry.oldest_pending_age_seconds
    return snapshot


class QueueMonitor:
    """Periodically checks every tenant's queue; updates gauges and raises alerts."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        *,
        interval_seconds: float,
        stuck_after_seconds: float,
        repeat: int = 10,
        clock: Callable[[], dt.datetime] = utcnow,
        lock_id: int = MONITOR_LOCK_ID,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._interval = interval_seconds
        self._stuck_after = stuck_after_seconds
        self._repeat = repeat
        self._clock = clock
        self._last: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
        self._stop = asyncio.Event()
        # Monitors sharing a lock id (every hub's, by default) take turns leading.
        self._leadership = Leadership(db, lock_id)

    async def run(self) -> None:
        """Check every interval until :meth:`stop`; then hand the lead to another process."""
        try:
            while not self._stop.is_set():
                try:
                    await self.check()
                except Exception:
                    logger.exception("queue check failed")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop reporting and give up the lead, so another process takes over at once."""
        metrics.queue_gauges.clear(self)
        await self._leadership.release()

    def stop(self) -> None:
        """Stop after the current check."""
        self._stop.set()

    async def check(self) -> list[TenantQueueHealth]:
        """One round: if this process leads, publish every tenant's gauges and raise alerts.

        Returns:
            The tenants with unsettled invoices; empty when another process leads.
        """
        if not await self._leadership.held():
            metrics.queue_gauges.clear(self)
            self._last.clear()  # whoever leads next starts its own alert history
            return []
        now = self._clock()
        async with self._db.write("monitor.check", quiet=True) as session:
            health = await queue_health(session, now, self._stuck_after, include_settled=False)
            tenant_ids = list(await session.scalars(select(Tenant.id)))
            events = self._alerts(health)
            await append_results(session, events, now)
            if events:
                mark_work(session, {"fbrhub.alerts": len(events)})
        metrics.queue_gauges.publish(self, queue_snapshot(tenant_ids, health))
        for tenant_id in {e.tenant_id for e in events}:
            self._notifier.notify(results_topic(tenant_id))
        return health

    def _alerts(self, health: list[TenantQueueHealth]) -> list[NewResult]:
        events: list[NewResult] = []
        for entry in health:
            for kind, count, detail in (
                (
                    "STUCK_INVOICES",
                    entry.stuck,
                    f"{entry.stuck} invoice(s) pending longer than {self._stuck_after:.0f}s",
                ),
                (
                    "IN_DOUBT_INVOICES",
                    entry.in_doubt,
                    f"{entry.in_doubt} invoice(s) in doubt: check FBR and call ResolveInvoice",
                ),
            ):
                key = (entry.tenant_id, kind)
                last_count, rounds = self._last.get(key, (0, 0))
                if count == 0:
                    self._last.pop(key, None)
                    continue
                if count != last_count or rounds + 1 >= self._repeat:
                    age = entry.oldest_pending_age_seconds if kind == "STUCK_INVOICES" else 0.0
                    events.append(
                        NewResult(
                            entry.tenant_id,
                            None,
                            ResultKind.ALERT,
                            _alert(kind, detail, count=count, age=age),
                        )
                    )
                    self._last[key] = (count, 0)
                else:
                    self._last[key] = (count, rounds + 1)
        return events
