"""Claims: taking due invoices under a lease, and giving back the ones never sent.

:func:`claim_due_invoices` moves due rows to SENDING under a lease (owner + expiry) and
writes an attempt row, all committed before a single byte goes to FBR, so whatever happens
next the hub knows an attempt may have been made. On PostgreSQL claims use
``FOR UPDATE SKIP LOCKED``, so several hub processes share the work and never claim the same
invoice.

A claimed invoice that provably never left the hub (it waited in the forwarder's ready
buffer) goes back to the queue with :func:`release_unsent_claims`; its attempt is closed as
``not_sent``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, case, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.channels import Channel
from clients.fbr.payload import NormalisedInvoice
from server.access.tenants import TenantProfile
from server.audit.trail import NewAuditEvent, append_audit_events, invoice_event
from server.db.bulk import insert_rows
from server.db.engine import Database, mark_work
from server.db.models import DUE_CONDITION, DeliveryAttempt, Invoice, InvoiceState, Tenant
from server.db.notify import Notifier
from server.invoices.intake import INVOICES_TOPIC
from server.observability.semconv import MESSAGING_BATCH_MESSAGE_COUNT

_INVOICES = cast(Table, Invoice.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
# The outcome of an attempt that was claimed but released before anything went out.
NOT_SENT = "not_sent"


@dataclass(frozen=True)
class Claimed:
    """One invoice claimed for an attempt (by ``worker``, at ``claimed_at``)."""

    invoice_id: uuid.UUID
    tenant: TenantProfile
    erp_reference: str
    attempt: int
    channel: Channel
    body: NormalisedInvoice
    claimed_at: dt.datetime
    worker: str
    # The ingest span that queued it (W3C traceparent; the attempt's span links to it) and
    # when the hub received it (the start of the receipt-to-outcome latency).
    traceparent: str | None = None
    received_at: dt.datetime | None = None


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
    aware = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    return invoice_event(
        tenant_id,
        invoice_id,
        "sending",
        actor=f"system:{worker}",
        attempt=str(attempt),
        claimed_at=aware.isoformat(),
    )


def claim_event(claimed: Claimed) -> NewAuditEvent:
    """The deferred audit event of ``claimed``'s claim (see :func:`sending_event`)."""
    return sending_event(
        claimed.tenant.id,
        claimed.invoice_id,
        claimed.attempt,
        claimed.worker,
        claimed.claimed_at,
    )


async def close_open_attempts(
    session: AsyncSession, keys: list[tuple[uuid.UUID, int]], **values: Any
) -> None:
    """Finish the still-open attempts ``(invoice id, number)`` with the same ``values``."""
    await session.execute(
        update(_ATTEMPTS)
        .where(
            _ATTEMPTS.c.invoice_id == bindparam("b_invoice"),
            _ATTEMPTS.c.number == bindparam("b_number"),
            _ATTEMPTS.c.finished_at.is_(None),
        )
        .values(**values),
        [{"b_invoice": invoice_id, "b_number": number} for invoice_id, number in keys],
    )


async def read_tenant_profiles(db: Database) -> list[TenantProfile]:
    """Every tenant's delivery profile (tokens can be rotated: re-read periodically)."""
    # Quiet: re-read every few seconds by the forwarder, and never news worth a span.
    async with db.read("outbox.tenants", quiet=True) as session:
        rows = await session.scalars(select(Tenant))
        return [TenantProfile.from_row(row) for row in rows]


async def claim_due_invoices(
    db: Database,
    budgets: Mapping[uuid.UUID, int],
    *,
    worker_id: str,
    lease_seconds: float,
    now: dt.datetime,
    profiles: Mapping[uuid.UUID, TenantProfile] | None = None,
) -> list[Claimed]:
    """Claim up to ``budgets[tenant]`` due invoices per tenant, in one transaction.

    Args:
        db: the database.
        budgets: most invoices to claim per tenant.
        worker_id: the lease owner written on each claimed invoice.
        lease_seconds: how long the claim holds.
        now: the claim time; the lease runs from it.
        profiles: the tenants' delivery profiles when the caller keeps them fresh (the
            forwarder re-reads them every few seconds); read here when None.
    """
    lease_until = now + dt.timedelta(seconds=lease_seconds)
    rows: list[Row[Any]] = []
    # Quiet: the forwarder polls this; only a claim that took invoices gets a span.
    async with db.write("outbox.claim", quiet=True) as session:
        for tenant_id, budget in budgets.items():
            if budget > 0:
                rows += await _lease_due(session, tenant_id, budget, worker_id, now, lease_until)
        if not rows:
            return []
        mark_work(session, {MESSAGING_BATCH_MESSAGE_COUNT: len(rows)})
        await _open_attempts(session, rows, worker_id, now)
        tenant_ids = {row.tenant_id for row in rows}
        if profiles is None or not tenant_ids <= profiles.keys():
            profiles = await _read_profiles(session, tenant_ids)
    return [
        Claimed(
            row.id,
            profiles[row.tenant_id],
            row.erp_reference,
            row.attempt_count,
            Channel(row.channel),
            row.payload,
            now,
            worker_id,
            row.traceparent,
            row.created_at,
        )
        for row in rows
    ]


async def _lease_due(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    budget: int,
    worker_id: str,
    now: dt.datetime,
    lease_until: dt.datetime,
) -> Sequence[Row[Any]]:
    """Move up to ``budget`` of the tenant's due invoices to SENDING, oldest due first."""
    due = (
        select(_INVOICES.c.id)
        .where(
            _INVOICES.c.tenant_id == tenant_id,
            # Literal, not bound: so the planner can prove it matches the partial index even
            # for a prepared (generic) plan.
            DUE_CONDITION,
            _INVOICES.c.next_attempt_at <= now,
        )
        .order_by(_INVOICES.c.next_attempt_at)
        .limit(budget)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(_INVOICES)
        .where(_INVOICES.c.id.in_(due.scalar_subquery()))
        .values(
            state=InvoiceState.SENDING.value,
            lease_owner=worker_id,
            lease_expires_at=lease_until,
            attempt_count=_INVOICES.c.attempt_count + 1,
            updated_at=now,
        )
        .returning(
            _INVOICES.c.id,
            _INVOICES.c.tenant_id,
            _INVOICES.c.erp_reference,
            _INVOICES.c.attempt_count,
            _INVOICES.c.channel,
            _INVOICES.c.payload,
            _INVOICES.c.traceparent,
            _INVOICES.c.created_at,
        )
    )
    return rows.all()


async def _open_attempts(
    session: AsyncSession, rows: list[Row[Any]], worker_id: str, now: dt.datetime
) -> None:
    """Write one open attempt row per claimed invoice: the proof an attempt may be made."""
    await insert_rows(
        session,
        _ATTEMPTS,
        [
            {
                "tenant_id": row.tenant_id,
                "invoice_id": row.id,
                "number": row.attempt_count,
                "started_at": now,
                "worker": worker_id,
            }
            for row in rows
        ],
    )


async def _read_profiles(
    session: AsyncSession, tenant_ids: set[uuid.UUID]
) -> dict[uuid.UUID, TenantProfile]:
    rows = await session.scalars(select(Tenant).where(Tenant.id.in_(tenant_ids)))
    return {row.id: TenantProfile.from_row(row) for row in rows}


async def release_unsent_claims(
    db: Database,
    notifier: Notifier,
    claimed: list[Claimed],
    *,
    worker_id: str,
    now: dt.datetime,
) -> int:
    """Put claimed invoices that were never sent back in the queue; returns how many.

    Only for invoices this worker still holds and provably did not send (they waited in
    the forwarder's ready buffer): the attempt is closed as ``not_sent`` and the invoice
    is due again at once. An invoice whose lease was lost meanwhile is left alone.
    """
    if not claimed:
        return 0
    async with db.write("outbox.release") as session:
        released = await _requeue_held(session, claimed, worker_id, now)
        if not released:
            return 0
        await close_open_attempts(
            session,
            [(c.invoice_id, c.attempt) for c in released],
            finished_at=now,
            outcome=NOT_SENT,
            detail="released before sending",
        )
        audit: list[NewAuditEvent] = []
        for c in released:
            audit += [
                claim_event(c),
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
    notifier.notify(INVOICES_TOPIC)
    return len(released)


async def _requeue_held(
    session: AsyncSession, claimed: list[Claimed], worker_id: str, now: dt.datetime
) -> list[Claimed]:
    """Make the claims this worker still holds due again; returns those it held."""
    given_back = await session.execute(
        update(_INVOICES)
        .where(
            tuple_(_INVOICES.c.id, _INVOICES.c.attempt_count).in_(
                [(c.invoice_id, c.attempt) for c in claimed]
            ),
            _INVOICES.c.state == InvoiceState.SENDING.value,
            _INVOICES.c.lease_owner == worker_id,
        )
        .values(
            # Back to the state it was claimed from: never tried, or tried before.
            state=case(
                (_INVOICES.c.attempt_count == 1, InvoiceState.QUEUED.value),
                else_=InvoiceState.RETRY_WAIT.value,
            ),
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=now,
            updated_at=now,
        )
        .returning(_INVOICES.c.id)
    )
    ids = set(given_back.scalars())
    return [c for c in claimed if c.invoice_id in ids]
