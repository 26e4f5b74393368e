"""Delivery to FBR: claim due invoices, send them, record what happened (DESIGN §2.3).

The invoices table is the outbox. A worker *claims* due rows in one transaction: they go to
SENDING under a lease (owner + expiry) and an attempt row is written, all committed before a
single byte goes to FBR. So whatever happens next, the hub knows an attempt may have been
made. Outcomes are then recorded in small batches:

- ACCEPTED / REJECTED: final; a result event is written.
- RETRYABLE (provably before FBR saw the request): RETRY_WAIT with exponential backoff and
  jitter (at least FBR's Retry-After).
- IN_DOUBT (FBR may have issued a number): never resent automatically; an event alerts.

A worker that dies leaves SENDING rows behind; once their lease expires any worker moves them
to IN_DOUBT (sent or not is unknown), never back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.codes import fbr_error_path
from clients.fbr.payload import to_fbr_json
from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState, Tenant
from server.domain.ingest import INVOICES_TOPIC, utcnow
from server.domain.notify import Notifier
from server.domain.results import NewResult, ResultKind, append_results, results_topic
from server.domain.tenants import TenantProfile

logger = logging.getLogger(__name__)

DUE_STATES = (InvoiceState.QUEUED.value, InvoiceState.RETRY_WAIT.value)


class FbrSender(Protocol):
    """What the forwarder needs of the FBR client."""

    async def post_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome: ...


@dataclass(frozen=True)
class ForwarderConfig:
    """Tuning of the forwarder.

    Attributes:
        concurrency: most requests in flight to FBR at once.
        claim_batch: most invoices claimed per transaction.
        poll_seconds: how long to sleep when nothing is due (new ingest wakes it earlier).
        lease_seconds: how long a claim holds; must exceed the FBR read timeout.
        retry_base_seconds: first backoff step.
        retry_max_seconds: backoff cap.
    """

    concurrency: int = 64
    claim_batch: int = 200
    poll_seconds: float = 0.5
    lease_seconds: float = 60.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0


@dataclass(frozen=True)
class Claimed:
    """One invoice claimed for an attempt."""

    invoice_id: uuid.UUID
    tenant: TenantProfile
    erp_reference: str
    attempt: int
    body: dict[str, Any]


@dataclass(frozen=True)
class _Finished:
    claimed: Claimed
    outcome: DeliveryOutcome
    at: dt.datetime


def backoff_seconds(attempt: int, config: ForwarderConfig, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): capped exponential, equal jitter."""
    ceiling = min(config.retry_max_seconds, config.retry_base_seconds * 2 ** (attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)


def _rejection_error(outcome: DeliveryOutcome) -> dict[str, Any]:
    violations = [
        {
            "path": fbr_error_path(item.error_code, item.item_sno),
            "fbr_error_code": item.error_code,
            "message": item.error or "FBR rejected this line",
        }
        for item in outcome.item_statuses
        if item.status_code != "00"
    ]
    if not violations:
        violations = [
            {
                "path": fbr_error_path(outcome.error_code),
                "fbr_error_code": outcome.error_code,
                "message": outcome.error_message or "FBR rejected the invoice",
            }
        ]
    codes = ", ".join(sorted({v["fbr_error_code"] for v in violations if v["fbr_error_code"]}))
    return {
        "reason": "FBR_REJECTED",
        "message": f"FBR rejected the invoice (codes {codes})"
        if codes
        else "FBR rejected the invoice",
        "violations": violations,
    }


def _doubt_error(detail: str) -> dict[str, Any]:
    return {
        "reason": "FBR_OUTCOME_UNKNOWN",
        "message": "FBR may or may not have issued a number ("
        + detail
        + "); the hub will not resend on its own. Check FBR's portal, then resolve the invoice.",
        "violations": [],
    }


class Forwarder:
    """Claims due invoices and delivers them to FBR with bounded concurrency."""

    def __init__(
        self,
        db: Database,
        fbr: FbrSender,
        notifier: Notifier,
        config: ForwarderConfig,
        *,
        worker_id: str | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._fbr = fbr
        self._notifier = notifier
        self._config = config
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._rng = rng or random.Random()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Queue[_Finished] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._tenants: dict[uuid.UUID, TenantProfile] = {}

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until :meth:`stop` is called; then let in-flight sends finish."""
        recorder = asyncio.create_task(self._record_loop(), name="forwarder-recorder")
        next_reclaim = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping.is_set():
                if loop.time() >= next_reclaim:
                    await self._guarded(self.reclaim_expired_leases())
                    next_reclaim = loop.time() + self._config.lease_seconds / 4
                room = self._config.concurrency - len(self._in_flight)
                claimed = await self._guarded(self.claim_due(room)) if room > 0 else []
                for item in claimed or []:
                    task = asyncio.create_task(self._deliver(item))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                if claimed and len(claimed) == room:
                    await self._wait_for_room()
                elif not claimed:
                    await self._idle()
        finally:
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

    async def _guarded(self, work: Any) -> Any:
        try:
            return await work
        except Exception:
            logger.exception("forwarder database step failed; retrying shortly")
            await asyncio.sleep(self._config.poll_seconds)
            return None

    async def _idle(self) -> None:
        wake = asyncio.create_task(self._notifier.wait(INVOICES_TOPIC, self._config.poll_seconds))
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({wake, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (wake, stop):
            task.cancel()

    async def _wait_for_room(self) -> None:
        # Refill in bulk: one claim transaction per quarter of the window, not one per send.
        refill_at = max(1, self._config.concurrency // 4)
        while self._in_flight and self._config.concurrency - len(self._in_flight) < refill_at:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    # -- claiming ---------------------------------------------------------------------

    async def claim_due(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due invoices: SENDING under lease, attempt rows written."""
        limit = min(limit, self._config.claim_batch)
        now = self._clock()
        lease_until = now + dt.timedelta(seconds=self._config.lease_seconds)
        async with self._db.write("forwarder.claim") as session:
            due = (
                select(Invoice.id)
                .where(Invoice.state.in_(DUE_STATES), Invoice.next_attempt_at <= now)
                .order_by(Invoice.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = (
                await session.execute(
                    update(Invoice)
                    .where(Invoice.id.in_(due.scalar_subquery()))
                    .values(
                        state=InvoiceState.SENDING.value,
                        lease_owner=self.worker_id,
                        lease_expires_at=lease_until,
                        attempt_count=Invoice.attempt_count + 1,
                        updated_at=now,
                    )
                    .returning(
                        Invoice.id,
                        Invoice.tenant_id,
                        Invoice.erp_reference,
                        Invoice.attempt_count,
                        Invoice.payload,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            if not rows:
                return []
            await session.execute(
                insert(DeliveryAttempt),
                [
                    {
                        "tenant_id": row.tenant_id,
                        "invoice_id": row.id,
                        "number": row.attempt_count,
                        "started_at": now,
                        "worker": self.worker_id,
                    }
                    for row in rows
                ],
            )
            tenants = await self._profiles(session, {row.tenant_id for row in rows})
        return [
            Claimed(
                row.id, tenants[row.tenant_id], row.erp_reference, row.attempt_count, row.payload
            )
            for row in rows
        ]

    async def _profiles(
        self, session: AsyncSession, tenant_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, TenantProfile]:
        # Tokens can be rotated, so profiles are re-read for every claim (one small query).
        rows = await session.scalars(select(Tenant).where(Tenant.id.in_(tenant_ids)))
        return {row.id: TenantProfile.from_row(row) for row in rows}

    # -- sending ----------------------------------------------------------------------

    async def _deliver(self, claimed: Claimed) -> None:
        try:
            outcome = await self._fbr.post_invoice(
                to_fbr_json(claimed.body),
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
        await self._finished.put(_Finished(claimed, outcome, self._clock()))

    # -- recording --------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._finished.get()]
            while not self._finished.empty() and len(batch) < 500:
                batch.append(self._finished.get_nowait())
            while True:
                try:
                    await self.record(batch)
                    break
                except Exception:
                    logger.exception("recording delivery outcomes failed; retrying")
                    await asyncio.sleep(1.0)
            for _ in batch:
                self._finished.task_done()

    async def record(self, batch: list[_Finished]) -> None:
        """Write the outcomes of finished attempts, and their result events, in one transaction."""
        now = self._clock()
        invoice_updates: list[dict[str, Any]] = []
        attempt_updates: list[dict[str, Any]] = []
        events: list[NewResult] = []
        for finished in batch:
            claimed, outcome = finished.claimed, finished.outcome
            values, event = self._transition(claimed, outcome, finished.at)
            invoice_updates.append(
                {"b_id": claimed.invoice_id, "b_attempt": claimed.attempt, **values}
            )
            attempt_updates.append(
                {
                    "b_invoice": claimed.invoice_id,
                    "b_number": claimed.attempt,
                    "finished_at": finished.at,
                    "outcome": outcome.kind.name.lower(),
                    "http_status": outcome.http_status,
                    "fbr_error_code": outcome.error_code or None,
                    "detail": outcome.detail[:200] or None,
                }
            )
            if event is not None:
                events.append(event)
        async with self._db.write("forwarder.record") as session:
            await self._apply(session, invoice_updates, attempt_updates)
            await append_results(session, events, now)
        for tenant_id in {e.tenant_id for e in events}:
            self._notifier.notify(results_topic(tenant_id))
        if any(u["state"] == InvoiceState.RETRY_WAIT.value for u in invoice_updates):
            self._notifier.notify(INVOICES_TOPIC)

    async def _apply(
        self,
        session: AsyncSession,
        invoice_updates: list[dict[str, Any]],
        attempt_updates: list[dict[str, Any]],
    ) -> None:
        table = cast(Table, Invoice.__table__)
        # Group by the set of columns written so that each group is one executemany.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for values in invoice_updates:
            groups.setdefault(tuple(sorted(values)), []).append(values)
        for keys, rows in groups.items():
            columns = [k for k in keys if not k.startswith("b_")]
            statement = (
                update(table)
                .where(
                    table.c.id == bindparam("b_id"),
                    table.c.attempt_count == bindparam("b_attempt"),
                    # An operator may have resolved the invoice meanwhile; a late answer from
                    # FBR still wins over IN_DOUBT, since it is the truth about this attempt.
                    or_(
                        table.c.state == InvoiceState.SENDING.value,
                        and_(
                            table.c.state == InvoiceState.IN_DOUBT.value,
                            table.c.lease_owner.is_(None),
                        ),
                    ),
                )
                .values({c: bindparam(c) for c in columns})
            )
            await session.execute(statement, rows)
        attempts = cast(Table, DeliveryAttempt.__table__)
        await session.execute(
            update(attempts)
            .where(
                attempts.c.invoice_id == bindparam("b_invoice"),
                attempts.c.number == bindparam("b_number"),
            )
            .values(
                finished_at=bindparam("finished_at"),
                outcome=bindparam("outcome"),
                http_status=bindparam("http_status"),
                fbr_error_code=bindparam("fbr_error_code"),
                detail=bindparam("detail"),
            ),
            attempt_updates,
        )

    def _transition(
        self, claimed: Claimed, outcome: DeliveryOutcome, at: dt.datetime
    ) -> tuple[dict[str, Any], NewResult | None]:
        base: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "updated_at": at}
        statuses = [
            {
                "item_sno": s.item_sno,
                "status_code": s.status_code,
                "status": s.status,
                "invoice_no": s.invoice_no,
                "error_code": s.error_code,
                "error": s.error,
            }
            for s in outcome.item_statuses
        ]
        data: dict[str, Any] = {"erp_reference": claimed.erp_reference}
        if outcome.kind is OutcomeKind.ACCEPTED:
            state, kind = InvoiceState.ACCEPTED, ResultKind.ACCEPTED
            values = {
                **base,
                "state": state.value,
                "fbr_invoice_number": outcome.fbr_invoice_number,
                "fbr_dated": outcome.dated,
                "item_statuses": statuses,
                "error": None,
                "next_attempt_at": None,
            }
            data.update(fbr_invoice_number=outcome.fbr_invoice_number, fbr_dated=outcome.dated)
        elif outcome.kind is OutcomeKind.REJECTED:
            state, kind = InvoiceState.REJECTED_FBR, ResultKind.REJECTED
            error = _rejection_error(outcome)
            values = {
                **base,
                "state": state.value,
                "item_statuses": statuses,
                "error": error,
                "next_attempt_at": None,
            }
            data["error"] = error
        elif outcome.kind is OutcomeKind.RETRYABLE:
            delay = max(
                backoff_seconds(claimed.attempt, self._config, self._rng),
                outcome.retry_after or 0.0,
            )
            values = {
                **base,
                "state": InvoiceState.RETRY_WAIT.value,
                "next_attempt_at": at + dt.timedelta(seconds=delay),
                "error": {
                    "reason": "FBR_UNAVAILABLE",
                    "message": f"not delivered yet ({outcome.detail}); retrying",
                    "violations": [],
                },
            }
            return values, None
        else:
            state, kind = InvoiceState.IN_DOUBT, ResultKind.IN_DOUBT
            error = _doubt_error(outcome.detail)
            values = {
                **base,
                "state": state.value,
                "fbr_invoice_number": outcome.fbr_invoice_number or None,
                "error": error,
                "next_attempt_at": None,
            }
            data["error"] = error
        data["state"] = state.value
        return values, NewResult(claimed.tenant.id, claimed.invoice_id, kind, data)

    # -- crash recovery ---------------------------------------------------------------

    async def reclaim_expired_leases(self) -> int:
        """Move SENDING invoices whose lease expired to IN_DOUBT; returns how many."""
        now = self._clock()
        async with self._db.write("forwarder.reclaim") as session:
            rows = (
                await session.execute(
                    update(Invoice)
                    .where(
                        Invoice.state == InvoiceState.SENDING.value,
                        Invoice.lease_expires_at < now,
                    )
                    .values(
                        state=InvoiceState.IN_DOUBT.value,
                        lease_owner=None,
                        lease_expires_at=None,
                        updated_at=now,
                        error=_doubt_error(
                            "the worker sending it stopped before recording an answer"
                        ),
                    )
                    .returning(
                        Invoice.id, Invoice.tenant_id, Invoice.erp_reference, Invoice.attempt_count
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            if not rows:
                return 0
            attempts = cast(Table, DeliveryAttempt.__table__)
            await session.execute(
                update(attempts)
                .where(
                    attempts.c.invoice_id == bindparam("b_invoice"),
                    attempts.c.number == bindparam("b_number"),
                    attempts.c.finished_at.is_(None),
                )
                .values(finished_at=now, outcome="in_doubt", detail="lease expired"),
                [{"b_invoice": r.id, "b_number": r.attempt_count} for r in rows],
            )
            error = _doubt_error("the worker sending it stopped before recording an answer")
            await append_results(
                session,
                [
                    NewResult(
                        r.tenant_id,
                        r.id,
                        ResultKind.IN_DOUBT,
                        {"erp_reference": r.erp_reference, "state": "IN_DOUBT", "error": error},
                    )
                    for r in rows
                ],
                now,
            )
        logger.warning("moved %d invoice(s) with expired leases to IN_DOUBT", len(rows))
        for tenant_id in {r.tenant_id for r in rows}:
            self._notifier.notify(results_topic(tenant_id))
        return len(rows)
