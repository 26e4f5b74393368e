"""Result events: written with each outcome, read by StreamResults by sequence number.

Each tenant's events are numbered 1, 2, 3... by incrementing ``tenants.result_seq`` inside
the transaction that writes them. That UPDATE holds the tenant row's lock until commit, so
sequence numbers are handed out in commit order: a reader that has seen everything up to N
can never later find an event N-1 that committed after it looked. "Resume after N" is
therefore exact: nothing missed, nothing twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.bulk import insert_rows
from server.db.models import ResultEvent, Tenant
from server.db.notify import publish
from server.observability.tracing import current_trace_id


class ResultKind(StrEnum):
    """What an event reports."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    IN_DOUBT = "IN_DOUBT"
    RESOLVED_ISSUED = "RESOLVED_ISSUED"
    REQUEUED = "REQUEUED"
    ALERT = "ALERT"


@dataclass(frozen=True)
class NewResult:
    """An event to append.

    Attributes:
        tenant_id: whose event it is.
        invoice_id: which invoice (None for alerts).
        kind: what happened.
        data: erp_reference, state, fbr_invoice_number, fbr_dated, error (no raw bodies);
            for alerts, ``alert``: kind, invoice_count, oldest_age_seconds, endpoint, detail.
        trace_id: the trace that produced the event (a delivery attempt's, an operator's
            call...); taken from the current span when empty. Stored as ``data["trace_id"]``.
    """

    tenant_id: uuid.UUID
    invoice_id: uuid.UUID | None
    kind: ResultKind
    data: dict[str, Any]
    trace_id: str = ""


def results_topic(tenant_id: uuid.UUID) -> str:
    """The notifier topic that wakes a tenant's results followers."""
    return f"results:{tenant_id}"


async def append_results(
    session: AsyncSession, events: Sequence[NewResult], now: dt.datetime
) -> None:
    """Append events inside the caller's transaction, numbering them per tenant."""
    by_tenant: dict[uuid.UUID, list[NewResult]] = defaultdict(list)
    for event in events:
        by_tenant[event.tenant_id].append(event)
    rows: list[dict[str, Any]] = []
    current = current_trace_id()
    # Lock tenants in a fixed order so that two writers never deadlock.
    for tenant_id in sorted(by_tenant):
        batch = by_tenant[tenant_id]
        last = await session.scalar(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(result_seq=Tenant.result_seq + len(batch))
            .returning(Tenant.result_seq)
        )
        assert last is not None
        first = last - len(batch) + 1
        rows.extend(
            {
                "tenant_id": tenant_id,
                "seq": first + offset,
                "invoice_id": event.invoice_id,
                "kind": event.kind.value,
                "created_at": now,
                "data": _with_trace(event.data, event.trace_id or current),
            }
            for offset, event in enumerate(batch)
        )
    if rows:
        await insert_rows(session, cast(Table, ResultEvent.__table__), rows, json_columns={"data"})
        await publish(session, (results_topic(t) for t in by_tenant))


def _with_trace(data: dict[str, Any], trace_id: str) -> dict[str, Any]:
    return {**data, "trace_id": trace_id} if trace_id else data


async def read_results(
    session: AsyncSession, tenant_id: uuid.UUID, after_seq: int, limit: int
) -> list[ResultEvent]:
    """A tenant's events with sequence numbers above ``after_seq``, oldest first."""
    rows = await session.scalars(
        select(ResultEvent)
        .where(ResultEvent.tenant_id == tenant_id, ResultEvent.seq > after_seq)
        .order_by(ResultEvent.seq)
        .limit(limit)
    )
    return list(rows)
