"""Reading a tenant's audit events, in chain order, with the filters ListAuditEvents offers."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import AuditEvent


@dataclass(frozen=True)
class AuditFilters:
    """Which events to keep; empty means no filter.

    Attributes:
        actions: exact actions (``invoice.accepted``...).
        resource_prefix: resources starting with this (``invoices/``...).
        outcome: exact outcome (``OK`` or a reason).
        start_time: events at or after this time.
        end_time: events before this time.
    """

    actions: tuple[str, ...] = ()
    resource_prefix: str = ""
    outcome: str = ""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None

    def conditions(self) -> list[Any]:
        """The filters as WHERE conditions."""
        found: list[Any] = []
        if self.actions:
            found.append(AuditEvent.action.in_(self.actions))
        if self.resource_prefix:
            found.append(AuditEvent.resource.startswith(self.resource_prefix, autoescape=True))
        if self.outcome:
            found.append(AuditEvent.outcome == self.outcome)
        if self.start_time is not None:
            found.append(AuditEvent.event_time >= self.start_time)
        if self.end_time is not None:
            found.append(AuditEvent.event_time < self.end_time)
        return found


async def read_audit_events(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    after_seq: int,
    limit: int,
    filters: AuditFilters | None = None,
) -> list[AuditEvent]:
    """A tenant's events numbered above ``after_seq`` that pass ``filters``, oldest first."""
    conditions = filters.conditions() if filters is not None else []
    rows = await session.scalars(
        select(AuditEvent)
        .where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > after_seq, *conditions)
        .order_by(AuditEvent.seq)
        .limit(limit)
    )
    return list(rows)
