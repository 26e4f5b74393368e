"""Consent decisions of an account, and closing an account (anonymised later by the sweeper)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import AccountStatus, ConsentEvent
from server.errors import AccountNotActive
from server.privacy.subjects import load_account

CONSENT_PURPOSES = ("marketing", "analytics", "product_updates", "support_contact")


@dataclass(frozen=True)
class ConsentRecord:
    """One consent decision (given or withdrawn) for one purpose."""

    purpose: str
    granted: bool
    source: str
    recorded_at: dt.datetime
    request_id: str

    @classmethod
    def of(cls, event: ConsentEvent) -> ConsentRecord:
        """The decision a stored consent event records."""
        return cls(event.purpose, event.granted, event.source, event.recorded_at, event.request_id)

    def to_record(self) -> dict[str, Any]:
        """The decision as JSON-ready data (kept for replays of the request id)."""
        return {
            "purpose": self.purpose,
            "granted": self.granted,
            "source": self.source,
            "recorded_at": self.recorded_at.isoformat(),
            "request_id": self.request_id,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ConsentRecord:
        """The decision read back from :meth:`to_record`."""
        return cls(
            record["purpose"],
            bool(record["granted"]),
            record["source"],
            dt.datetime.fromisoformat(record["recorded_at"]),
            record["request_id"],
        )


@dataclass(frozen=True)
class ConsentHistory:
    """An account's current decision per purpose and its whole history, oldest first."""

    current: list[ConsentRecord]
    history: list[ConsentRecord]


@dataclass(frozen=True)
class Closure:
    """When an account was closed, and the latest time it will be anonymised."""

    closed_at: dt.datetime
    anonymise_by: dt.datetime

    def to_record(self) -> dict[str, Any]:
        """The closure as JSON-ready data (kept for replays of the request id)."""
        return {
            "closed_at": self.closed_at.isoformat(),
            "anonymise_by": self.anonymise_by.isoformat(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Closure:
        """The closure read back from :meth:`to_record`."""
        return cls(
            dt.datetime.fromisoformat(record["closed_at"]),
            dt.datetime.fromisoformat(record["anonymise_by"]),
        )


async def record_consent(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    purpose: str,
    granted: bool,
    source: str,
    request_id: str,
    now: dt.datetime,
) -> ConsentRecord:
    """Append a consent decision to an active account's history.

    Raises:
        NotFound: no such account.
        AccountNotActive: the account is closed or anonymised.
    """
    account = await load_account(session, tenant_id, account_id)
    if account.status != AccountStatus.ACTIVE:
        raise AccountNotActive("consent can only be recorded for an active account")
    event = ConsentEvent(
        tenant_id=tenant_id,
        account_id=account_id,
        purpose=purpose,
        granted=granted,
        source=source,
        request_id=request_id,
        recorded_at=now,
    )
    session.add(event)
    await session.flush()
    return ConsentRecord.of(event)


async def consent_history(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID
) -> ConsentHistory:
    """The account's current decision per purpose and its full history.

    Raises:
        NotFound: no such account.
    """
    await load_account(session, tenant_id, account_id)
    events = await session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.tenant_id == tenant_id, ConsentEvent.account_id == account_id)
        .order_by(ConsentEvent.id)
    )
    history = [ConsentRecord.of(event) for event in events]
    latest = {record.purpose: record for record in history}
    return ConsentHistory([latest[p] for p in sorted(latest)], history)


async def close_account(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    anonymise_after: dt.timedelta,
    now: dt.datetime,
) -> Closure:
    """Close an account and schedule its anonymisation.

    Raises:
        NotFound: no such account.
        AccountNotActive: the account is already closed.
    """
    account = await load_account(session, tenant_id, account_id, for_update=True)
    if account.status != AccountStatus.ACTIVE:
        raise AccountNotActive("the account is already closed")
    account.status = AccountStatus.CLOSED
    account.closed_at = now
    account.anonymise_due_at = now + anonymise_after
    return Closure(now, account.anonymise_due_at)
