"""The outbox side of delivery: claiming invoices, recording outcomes, recovering leases.

The invoices table is the outbox. :meth:`Outbox.claim` moves due rows to SENDING under a
lease (owner + expiry) and writes an attempt row, all committed before a single byte goes to
FBR, so whatever happens next the hub knows an attempt may have been made. On PostgreSQL
claims use ``FOR UPDATE SKIP LOCKED``, so several hub processes share the work and never
claim the same invoice. :meth:`Outbox.record` writes outcomes in batches:

- ACCEPTED / REJECTED: final; a result event is written.
- RETRYABLE (provably before FBR saw the request): RETRY_WAIT with capped exponential
  backoff and jitter (at least FBR's Retry-After).
- IN_DOUBT (FBR may have issued a number): never resent automatically; an event alerts.

A worker that dies leaves SENDING rows behind; once their lease expires
:meth:`Outbox.reclaim_expired_leases` moves them to IN_DOUBT (sent or not is unknown),
never back to the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.codes import fbr_error_path
from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from server.access.tenants import TenantProfile
from server.audit.trail import NewAuditEvent, append_audit_events, invoice_event
from server.db.bulk import insert_rows
from server.db.engine import Database
from server.db.models import DUE_CONDITION, DeliveryAttempt, Invoice, InvoiceState, Tenant
from server.db.notify import Notifier
from server.invoices.intake import INVOICES_TOPIC
from server.invoices.results import NewResult, ResultKind, append_results, results_topic

logger = logging.getLogger(__name__)

_AUDIT_ACTIONS = {
    OutcomeKind.ACCEPTED: "accepted",
    OutcomeKind.REJECTED: "rejected_fbr",
    OutcomeKind.RETRYABLE: "retry_wait",
    OutcomeKind.IN_DOUBT: "in_doubt",
}
# The outcome of an attempt that was claimed but released before anything went out.
NOT_SENT = "not_sent"
LEASE_LOST_DETAIL = "the worker sending it stopped before recording an answer"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for failures that provably happened before FBR saw the request.

    Attributes:
        base_seconds: first backoff step.
        max_seconds: cap.
    """

    base_seconds: float = 1.0
    max_seconds: float = 300.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based): capped exponential, equal jitter."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Claimed:
    """One invoice claimed for an attempt (by ``worker``, at ``claimed_at``)."""

    invoice_id: uuid.UUID
    tenant: TenantProfile
    erp_reference: str
    attempt: int
    body: dict[str, Any]
    claimed_at: dt.datetime
    worker: str


@dataclass(frozen=True)
class Finished:
    """An attempt whose outcome is known and waits to be recorded."""

    claimed: Claimed
    outcome: DeliveryOutcome
    at: dt.datetime


def rejection_error(outcome: DeliveryOutcome) -> dict[str, Any]:
    """The stored error of an invoice FBR rejected: one violation per failing line/header."""
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


def doubt_error(detail: str) -> dict[str, Any]:
    """The stored error of an invoice in doubt."""
    return {
        "reason": "FBR_OUTCOME_UNKNOWN",
        "message": "FBR may or may not have issued a number ("
        + detail
        + "); the hub will not resend on its own. Check FBR's records, then call "
        "ResolveInvoice.",
        "violations": [],
    }


def sending_event(
    tenant_id: uuid.UUID, invoice_id: uuid.UUID, attempt: int, worker: str, at: dt.datetime
) -> NewAuditEvent:
    """The audit event of a claim (QUEUED/RETRY_WAIT -> SENDING) by ``worker`` ``at``.

    It is written with the attempt's outcome (or its release, or its lease recovery), not in
    the claim's own transaction: the attempt row committed by the claim is what proves, before
    anything is sent, that an attempt may have been made, and keeping the audit chain out of
    claims lets claims run without waiting for the chain's per-tenant lock. ``claimed_at``
    says when the claim happened.
    """
    return invoice_event(
        tenant_id,
        invoice_id,
        "sending",
        actor=f"system:{worker}",
        attempt=str(attempt),
        claimed_at=_aware(at).isoformat(),
    )


def _claim_event(claimed: Claimed) -> NewAuditEvent:
    return sending_event(
        claimed.tenant.id,
        claimed.invoice_id,
        claimed.attempt,
        claimed.worker,
        claimed.claimed_at,
    )


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


async def _close_attempts(
    session: AsyncSession, keys: list[tuple[uuid.UUID, int]], **values: Any
) -> None:
    """Finish the still-open attempts ``(invoice id, number)`` with the same ``values``."""
    attempts = _table(DeliveryAttempt)
    await session.execute(
        update(attempts)
        .where(
            attempts.c.invoice_id == bindparam("b_invoice"),
            attempts.c.number == bindparam("b_number"),
            attempts.c.finished_at.is_(None),
        )
        .values(**values),
        [{"b_invoice": invoice_id, "b_number": number} for invoice_id, number in keys],
    )


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


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
        async with self._db.read("outbox.tenants") as session:
            rows = await session.scalars(select(Tenant))
            return [TenantProfile.from_row(row) for row in rows]

    async def claim(
        self,
        budgets: Mapping[uuid.UUID, int],
        *,
        worker_id: str,
        lease_seconds: float,
        profiles: Mapping[uuid.UUID, TenantProfile] | None = None,
    ) -> list[Claimed]:
        """Claim up to ``budgets[tenant]`` due invoices per tenant, in one transaction.

        Args:
            budgets: most invoices to claim per tenant.
            worker_id: the lease owner written on each claimed invoice.
            lease_seconds: how long the claim holds.
            profiles: the tenants' delivery profiles when the caller keeps them fresh (the
                forwarder re-reads them every few seconds); read here when None.
        """
        now = self._clock()
        lease_until = now + dt.timedelta(seconds=lease_seconds)
        invoices = _table(Invoice)
        claimed_rows: list[Any] = []
        async with self._db.write("outbox.claim") as session:
            for tenant_id, budget in budgets.items():
                if budget <= 0:
                    continue
                due = (
                    select(invoices.c.id)
                    .where(
                        invoices.c.tenant_id == tenant_id,
                        # Literal, not bound: so the planner can prove it matches the
                        # partial index even for a prepared (generic) plan.
                        DUE_CONDITION,
                        invoices.c.next_attempt_at <= now,
                    )
                    .order_by(invoices.c.next_attempt_at)
                    .limit(budget)
                    .with_for_update(skip_locked=True)
                )
                rows = await session.execute(
                    update(invoices)
                    .where(invoices.c.id.in_(due.scalar_subquery()))
                    .values(
                        state=InvoiceState.SENDING.value,
                        lease_owner=worker_id,
                        lease_expires_at=lease_until,
                        attempt_count=invoices.c.attempt_count + 1,
                        updated_at=now,
                    )
                    .returning(
                        invoices.c.id,
                        invoices.c.tenant_id,
                        invoices.c.erp_reference,
                        invoices.c.attempt_count,
                        invoices.c.payload,
                    )
                )
                claimed_rows.extend(rows.all())
            if not claimed_rows:
                return []
            await insert_rows(
                session,
                _table(DeliveryAttempt),
                [
                    {
                        "tenant_id": row.tenant_id,
                        "invoice_id": row.id,
                        "number": row.attempt_count,
                        "started_at": now,
                        "worker": worker_id,
                    }
                    for row in claimed_rows
                ],
            )
            tenant_ids = {row.tenant_id for row in claimed_rows}
            if profiles is None or not tenant_ids <= profiles.keys():
                profiles = await self._profiles(session, tenant_ids)
        return [
            Claimed(
                row.id,
                profiles[row.tenant_id],
                row.erp_reference,
                row.attempt_count,
                row.payload,
                now,
                worker_id,
            )
            for row in claimed_rows
        ]

    async def _profiles(
        self, session: AsyncSession, tenant_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, TenantProfile]:
        rows = await session.scalars(select(Tenant).where(Tenant.id.in_(tenant_ids)))
        return {row.id: TenantProfile.from_row(row) for row in rows}

    async def record(self, batch: list[Finished]) -> None:
        """Write the outcomes of finished attempts and their result events, in one transaction."""
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
        audit: list[NewAuditEvent] = []
        for f in batch:
            audit += [
                _claim_event(f.claimed),
                invoice_event(
                    f.claimed.tenant.id,
                    f.claimed.invoice_id,
                    _AUDIT_ACTIONS[f.outcome.kind],
                    actor="system:forwarder",
                    attempt=str(f.claimed.attempt),
                    http_status=str(f.outcome.http_status or ""),
                    fbr_error_code=f.outcome.error_code,
                ),
            ]
        async with self._db.write("outbox.record") as session:
            await self._apply(session, invoice_updates, attempt_updates)
            await append_results(session, events, now)
            await append_audit_events(session, audit, now)
        for tenant_id in {e.tenant_id for e in events}:
            self._notifier.notify(results_topic(tenant_id))

    async def _apply(
        self,
        session: AsyncSession,
        invoice_updates: list[dict[str, Any]],
        attempt_updates: list[dict[str, Any]],
    ) -> None:
        table = _table(Invoice)
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
        attempts = _table(DeliveryAttempt)
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
            error = rejection_error(outcome)
            values = {
                **base,
                "state": state.value,
                "item_statuses": statuses,
                "error": error,
                "next_attempt_at": None,
            }
            data["error"] = error
        elif outcome.kind is OutcomeKind.RETRYABLE:
            delay = max(self._retry.delay(claimed.attempt, self._rng), outcome.retry_after or 0.0)
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
            error = doubt_error(outcome.detail)
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

    async def release(self, claimed: list[Claimed], *, worker_id: str) -> int:
        """Put claimed invoices that were never sent back in the queue; returns how many.

        Only for invoices this worker still holds and provably did not send (they waited in
        the forwarder's ready buffer): the attempt is closed as ``not_sent`` and the invoice
        is due again at once. An invoice whose lease was lost meanwhile is left alone.
        """
        if not claimed:
            return 0
        now = self._clock()
        table = _table(Invoice)
        async with self._db.write("outbox.release") as session:
            given_back = await session.execute(
                update(table)
                .where(
                    tuple_(table.c.id, table.c.attempt_count).in_(
                        [(c.invoice_id, c.attempt) for c in claimed]
                    ),
                    table.c.state == InvoiceState.SENDING.value,
                    table.c.lease_owner == worker_id,
                )
                .values(
                    # Back to the state it was claimed from: never tried, or tried before.
                    state=case(
                        (table.c.attempt_count == 1, InvoiceState.QUEUED.value),
                        else_=InvoiceState.RETRY_WAIT.value,
                    ),
                    lease_owner=None,
                    lease_expires_at=None,
                    next_attempt_at=now,
                    updated_at=now,
                )
                .returning(table.c.id)
            )
            ids = set(given_back.scalars())
            released = [c for c in claimed if c.invoice_id in ids]
            if not released:
                return 0
            await _close_attempts(
                session,
                [(c.invoice_id, c.attempt) for c in released],
                finished_at=now,
                outcome=NOT_SENT,
                detail="released before sending",
            )
            audit: list[NewAuditEvent] = []
            for c in released:
                audit += [
                    _claim_event(c),
                    invoice_event(
                        c.tenant.id,
                        c.invoice_id,
                        "released",
                        actor=f"system:{worker_id}",
                        attempt=str(c.attempt),
                        reason="not_sent",
                    ),
                ]
            await append_audit_events(session, audit, now)
        self._notifier.notify(INVOICES_TOPIC)
        return len(released)

    async def reclaim_expired_leases(self) -> int:
        """Move SENDING invoices whose lease expired to IN_DOUBT; returns how many."""
        now = self._clock()
        async with self._db.write("outbox.reclaim") as session:
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
                        error=doubt_error(LEASE_LOST_DETAIL),
                    )
                    .returning(
                        Invoice.id,
                        Invoice.tenant_id,
                        Invoice.erp_reference,
                        Invoice.attempt_count,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            if not rows:
                return 0
            attempts = _table(DeliveryAttempt)
            numbers = {r.id: r.attempt_count for r in rows}
            open_attempts = await session.execute(
                select(
                    attempts.c.invoice_id,
                    attempts.c.number,
                    attempts.c.started_at,
                    attempts.c.worker,
                ).where(attempts.c.invoice_id.in_(list(numbers)), attempts.c.finished_at.is_(None))
            )
            claims = {
                invoice_id: (started_at, worker)
                for invoice_id, number, started_at, worker in open_attempts
                if numbers[invoice_id] == number
            }
            await _close_attempts(
                session,
                list(numbers.items()),
                finished_at=now,
                outcome="in_doubt",
                detail="lease expired",
            )
            error = doubt_error(LEASE_LOST_DETAIL)
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
            audit: list[NewAuditEvent] = []
            for r in rows:
                claimed_at, worker = claims.get(r.id, (now, "unknown"))
                audit += [
                    sending_event(r.tenant_id, r.id, r.attempt_count, worker, claimed_at),
                    invoice_event(
                        r.tenant_id,
                        r.id,
                        "in_doubt",
                        actor="system:lease-recovery",
                        attempt=str(r.attempt_count),
                        reason="lease_expired",
                    ),
                ]
            await append_audit_events(session, audit, now)
        logger.warning("moved %d invoice(s) with expired leases to IN_DOUBT", len(rows))
        for tenant_id in {r.tenant_id for r in rows}:
            self._notifier.notify(results_topic(tenant_id))
        return len(rows)
