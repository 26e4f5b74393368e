"""Reading a tenant's invoices: one with its history, a filtered page, what a print needs.

Every query is scoped to the tenant; an invoice of another tenant is indistinguishable from
a missing one (both are :class:`~server.errors.NotFound`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState
from server.errors import InvoiceNotAccepted, NotFound


@dataclass(frozen=True)
class InvoiceLookup:
    """Which invoice: by the hub's id or by the ERP's reference (exactly one is set)."""

    invoice_id: uuid.UUID | None = None
    erp_reference: str | None = None

    def condition(self) -> Any:
        """The WHERE condition selecting the invoice (the tenant is added by the query)."""
        if self.invoice_id is not None:
            return Invoice.id == self.invoice_id
        return Invoice.erp_reference == self.erp_reference


@dataclass(frozen=True)
class InvoiceFilters:
    """What ``list_invoices`` keeps; empty means no filter."""

    states: tuple[InvoiceState, ...] = ()
    received_after: dt.datetime | None = None
    received_before: dt.datetime | None = None
    invoice_date_from: dt.date | None = None
    invoice_date_to: dt.date | None = None

    def conditions(self) -> list[Any]:
        """The filters as WHERE conditions."""
        found: list[Any] = []
        if self.states:
            found.append(Invoice.state.in_([s.value for s in self.states]))
        if self.received_after is not None:
            found.append(Invoice.created_at >= self.received_after)
        if self.received_before is not None:
            found.append(Invoice.created_at < self.received_before)
        if self.invoice_date_from is not None:
            found.append(Invoice.invoice_date >= self.invoice_date_from)
        if self.invoice_date_to is not None:
            found.append(Invoice.invoice_date <= self.invoice_date_to)
        return found


@dataclass(frozen=True)
class ListPosition:
    """Where a page of invoices (newest first) ends: the last invoice's receipt and id."""

    created_at: dt.datetime
    invoice_id: uuid.UUID


@dataclass(frozen=True)
class InvoiceDetail:
    """An invoice with its delivery attempts (in order) and the debit notes naming it."""

    invoice: Invoice
    attempts: Sequence[DeliveryAttempt]
    debit_note_ids: Sequence[uuid.UUID]


@dataclass(frozen=True)
class PrintFacts:
    """What printing an accepted invoice needs."""

    fbr_invoice_number: str
    fbr_dated: str
    channel: str


async def get_invoice(db: Database, tenant_id: uuid.UUID, lookup: InvoiceLookup) -> InvoiceDetail:
    """One invoice of the tenant with its attempts and debit notes.

    Raises:
        NotFound: no such invoice for the tenant.
    """
    async with db.read("invoice.get") as session:
        row = await session.scalar(
            select(Invoice).where(Invoice.tenant_id == tenant_id, lookup.condition())
        )
        if row is None:
            raise NotFound("invoice")
        attempts = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.invoice_id == row.id)
            .order_by(DeliveryAttempt.number)
        )
        notes = await session.scalars(
            select(Invoice.id)
            .where(Invoice.tenant_id == tenant_id, Invoice.original_invoice_id == row.id)
            .order_by(Invoice.created_at)
        )
        return InvoiceDetail(row, list(attempts), list(notes))


async def list_invoices(
    db: Database,
    tenant_id: uuid.UUID,
    filters: InvoiceFilters,
    *,
    after: ListPosition | None,
    limit: int,
) -> list[Invoice]:
    """The tenant's invoices matching ``filters``, newest first, after a position."""
    conditions = [Invoice.tenant_id == tenant_id, *filters.conditions()]
    if after is not None:
        conditions.append(
            or_(
                Invoice.created_at < after.created_at,
                and_(Invoice.created_at == after.created_at, Invoice.id < after.invoice_id),
            )
        )
    async with db.read("invoice.list") as session:
        rows = await session.scalars(
            select(Invoice)
            .where(*conditions)
            .order_by(Invoice.created_at.desc(), Invoice.id.desc())
            .limit(limit)
        )
        return list(rows)


def position_of(invoice: Invoice) -> ListPosition:
    """The list position just after ``invoice``."""
    return ListPosition(invoice.created_at, invoice.id)


async def print_facts(db: Database, tenant_id: uuid.UUID, lookup: InvoiceLookup) -> PrintFacts:
    """The FBR number, date and channel of an accepted invoice.

    Raises:
        NotFound: no such invoice for the tenant.
        InvoiceNotAccepted: FBR has not (yet) accepted it.
    """
    async with db.read("invoice.print") as session:
        row = (
            await session.execute(
                select(
                    Invoice.state,
                    Invoice.channel,
                    Invoice.fbr_invoice_number,
                    Invoice.fbr_dated,
                ).where(Invoice.tenant_id == tenant_id, lookup.condition())
            )
        ).one_or_none()
    if row is None:
        raise NotFound("invoice")
    if row.state != InvoiceState.ACCEPTED.value or not row.fbr_invoice_number:
        raise InvoiceNotAccepted(row.state)
    return PrintFacts(row.fbr_invoice_number, row.fbr_dated or "", row.channel)
