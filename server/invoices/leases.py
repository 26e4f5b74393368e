"""Lease recovery: what happens to invoices whose sending worker died.

A worker that dies leaves SENDING rows behind; once their lease expires
:func:`recover_expired_leases` moves them to IN_DOUBT (sent or not is unknown: the request
may have reached FBR), never back to the queue. It also writes what the dead worker never
did: the attempt's end (``in_doubt``, "lease expired"), an IN_DOUBT result event, and the
audit events ``invoice.sending`` (with the worker and claim time from the attempt row) and
``invoice.in_doubt``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Row, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.trail import NewAuditEvent, append_audit_events, invoice_event
from server.db.engine import Database, mark_work
from server.db.models import DeliveryAttempt, Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.claims import close_open_attempts, sending_event
from server.invoices.outcomes import doubt_error
from server.invoices.results import NewResult, ResultKind, append_results, results_topic
from server.observability.semconv import MESSAGING_BATCH_MESSAGE_COUNT

logger = logging.getLogger(__name__)

_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
# An invoice moved to IN_DOUBT: id, tenant id, ERP reference, attempt number.
_Expired = Row[uuid.UUID, uuid.UUID, str, int]
LEASE_LOST_DETAIL = "the worker sending it stopped before recording an answer"


async def recover_expired_leases(db: Database, notifier: Notifier, *, now: dt.datetime) -> int:
    """Move SENDING invoices whose lease expired by ``now`` to IN_DOUBT; returns how many."""
    # Quiet: a poll that finds nothing leaves no span.
    async with db.write("outbox.reclaim", quiet=True) as session:
        rows = await _expired_to_in_doubt(session, now)
        if not rows:
            return 0
        mark_work(session, {MESSAGING_BATCH_MESSAGE_COUNT: len(rows)})
        numbers = {r.id: r.attempt_count for r in rows}
        claims = await _claims_of(session, numbers)
        await close_open_attempts(
            session,
            list(numbers.items()),
            finished_at=now,
            outcome="in_doubt",
            detail="lease expired",
        )
        await append_results(session, _in_doubt_results(rows), now)
        await append_audit_events(session, _recovery_audit(rows, claims, now), now)
    logger.warning(
        "moved %d invoice(s) with expired leases to IN_DOUBT", len(rows), extra={"count": len(rows)}
    )
    for tenant_id in {r.tenant_id for r in rows}:
        notifier.notify(results_topic(tenant_id))
    return len(rows)


async def _expired_to_in_doubt(session: AsyncSession, now: dt.datetime) -> Sequence[_Expired]:
    """Move every SENDING invoice whose lease has expired to IN_DOUBT; returns them."""
    result = await session.execute(
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
            error=doubt_error(LEASE_LOST_DETAIL).to_json(),
        )
        .returning(
            Invoice.id,
            Invoice.tenant_id,
            Invoice.erp_reference,
            Invoice.attempt_count,
        )
        .execution_options(synchronize_session=False)
    )
    return result.all()


async def _claims_of(
    session: AsyncSession, numbers: dict[uuid.UUID, int]
) -> dict[uuid.UUID, tuple[dt.datetime, str]]:
    """When and by whom the open attempts ``{invoice id: number}`` were claimed."""
    open_attempts = await session.execute(
        select(
            _ATTEMPTS.c.invoice_id,
            _ATTEMPTS.c.number,
            _ATTEMPTS.c.started_at,
            _ATTEMPTS.c.worker,
        ).where(_ATTEMPTS.c.invoice_id.in_(list(numbers)), _ATTEMPTS.c.finished_at.is_(None))
    )
    return {
        invoice_id: (started_at, worker)
        for invoice_id, number, started_at, worker in open_attempts
        if numbers[invoice_id] == number
    }


def _in_doubt_results(rows: Sequence[_Expired]) -> list[NewResult]:
    error = doubt_error(LEASE_LOST_DETAIL).to_json()
    return [
        NewResult(
            r.tenant_id,
            r.id,
            ResultKind.IN_DOUBT,
            {"erp_reference": r.erp_reference, "state": "IN_DOUBT", "error": error},
        )
        for r in rows
    ]


def _recovery_audit(
    rows: Sequence[_Expired],
    claims: dict[uuid.UUID, tuple[dt.datetime, str]],
    now: dt.datetime,
) -> list[NewAuditEvent]:
    """The claim event the dead worker never wrote, and the move to IN_DOUBT, per invoice."""
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
    return audit
