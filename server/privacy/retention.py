"""The retention sweeper: anonymise closed accounts, purge invoices past retention.

Run by ``fbrhub retention run`` and periodically by the server. The clock is a parameter,
so tests (and a catch-up run) can sweep "as of" any time. Every act is audited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select

from server.audit.trail import NewAuditEvent, append_audit_events
from server.clock import Clock, utcnow
from server.db.engine import Database, mark_work
from server.db.models import (
    Account,
    AccountStatus,
    Invoice,
    InvoiceState,
)
from server.privacy.erasure import anonymise_account, purge_invoices

logger = logging.getLogger(__name__)

ACTOR = "system:retention"
MINIMUM_RETENTION_YEARS = 5
# Only invoices FBR is done with may be purged; in-flight ones wait for their outcome.
PURGEABLE_STATES = frozenset(
    {
        InvoiceState.ACCEPTED,
        InvoiceState.REJECTED_FBR,
        InvoiceState.REJECTED_LOCAL,
        InvoiceState.CANCELLED,
    }
)
_BATCH = 500


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    anonymised_accounts: int
    purged_invoices: int


def retention_cutoff(now: dt.datetime, years: int) -> dt.datetime:
    """Records received before this time are past a retention of ``years`` years."""
    if years < MINIMUM_RETENTION_YEARS:
        raise ValueError(f"retention must be at least {MINIMUM_RETENTION_YEARS} years")
    try:
        return now.replace(year=now.year - years)
    except ValueError:  # 29 February
        return now.replace(year=now.year - years, day=28)


async def sweep(db: Database, *, retention_years: int, now: dt.datetime) -> SweepReport:
    """Anonymise closed accounts whose time has come and purge invoices past retention."""
    cutoff = retention_cutoff(now, retention_years)
    anonymised = purged = 0
    while (batch := await _anonymise_due_accounts(db, now)) > 0:
        anonymised += batch
        if batch < _BATCH:
            break
    while (batch := await _purge_invoices(db, cutoff, retention_years, now)) > 0:
        purged += batch
        if batch < _BATCH:
            break
    if anonymised or purged:
        logger.info(
            "retention sweep: %d accounts anonymised, %d invoices purged", anonymised, purged
        )
    return SweepReport(anonymised, purged)


async def _anonymise_due_accounts(db: Database, now: dt.datetime) -> int:
    """Anonymise up to one batch of closed accounts that are due; returns how many."""
    async with db.write("retention.accounts", quiet=True) as session:
        accounts = list(
            await session.scalars(
                select(Account)
                .where(Account.status == AccountStatus.CLOSED, Account.anonymise_due_at <= now)
                .limit(_BATCH)
                .with_for_update()
            )
        )
        if accounts:
            mark_work(session, {"fbrhub.accounts": len(accounts)})
        for account in accounts:
            await anonymise_account(session, account, force=True, now=now)
        await append_audit_events(
            session,
            [
                NewAuditEvent(
                    tenant_id=a.tenant_id,
                    actor=ACTOR,
                    action="account.anonymised",
                    resource=f"accounts/{a.id}",
                )
                for a in accounts
            ],
            now,
        )
    return len(accounts)


async def _purge_invoices(
    db: Database, cutoff: dt.datetime, retention_years: int, now: dt.datetime
) -> int:
    """Delete up to one batch of settled invoices received before ``cutoff``; returns how many.

    Their attempts, result events, annotations and holds go with them.
    """
    async with db.write("retention.invoices", quiet=True) as session:
        rows = (
            await session.execute(
                select(Invoice.id, Invoice.tenant_id)
                .where(Invoice.created_at < cutoff, Invoice.state.in_(PURGEABLE_STATES))
                .limit(_BATCH)
            )
        ).all()
        ids = [r.id for r in rows]
        if ids:
            mark_work(session, {"fbrhub.invoices": len(ids)})
            await purge_invoices(session, ids)
        await append_audit_events(
            session,
            [
                NewAuditEvent(
                    tenant_id=r.tenant_id,
                    actor=ACTOR,
                    action="invoice.purged",
                    resource=f"invoices/{r.id}",
                    details={"retention_years": str(retention_years)},
                )
                for r in rows
            ],
            now,
        )
    return len(ids)


async def run_periodically(
    db: Database,
    *,
    retention_years: int,
    interval_seconds: float,
    clock: Clock = utcnow,
    stop: asyncio.Event,
) -> None:
    """Sweep every ``interval_seconds`` until ``stop`` is set; a failed sweep is retried."""
    while not stop.is_set():
        try:
            await sweep(db, retention_years=retention_years, now=clock())
        except Exception:
            logger.exception("retention sweep failed; retrying at the next interval")
        try:
            async with asyncio.timeout(interval_seconds):
                await stop.wait()
        except TimeoutError:
            continue
