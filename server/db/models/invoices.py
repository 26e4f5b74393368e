"""Tables of the invoice path: invoices (which are also the outbox), delivery attempts,
result events, and FBR reference snapshots.

Every table that holds tenant data is keyed by ``tenant_id`` first, so that every query can
be scoped to one tenant and the schema is ready for partitioning by tenant. The outbox is
the ``invoices`` table itself: ``state`` + ``next_attempt_at`` + the lease columns.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.db.models.base import Base, BigIntId, UtcDateTime


class InvoiceState(StrEnum):
    """Lifecycle of an invoice at the hub; values are stored as text."""

    REJECTED_LOCAL = "REJECTED_LOCAL"
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    RETRY_WAIT = "RETRY_WAIT"
    ACCEPTED = "ACCEPTED"
    REJECTED_FBR = "REJECTED_FBR"
    IN_DOUBT = "IN_DOUBT"
    CANCELLED = "CANCELLED"


# Invoices waiting for a delivery attempt (the claimable ones).
DUE_CONDITION = text("state IN ('QUEUED', 'RETRY_WAIT')")


class Invoice(Base):
    """An invoice received from an ERP, and the outbox row that drives its delivery."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "erp_reference", name="uq_invoices_tenant_reference"),
        Index("ix_invoices_due", "state", "next_attempt_at"),
        # Claims are per tenant (pacing and fairness), oldest due first. Partial, so that a
        # claim reads only the due rows in order however many delivered invoices the table
        # holds (a plain (tenant, state, due) index cannot order across the two states).
        Index(
            "ix_invoices_tenant_due_at",
            "tenant_id",
            "next_attempt_at",
            postgresql_where=DUE_CONDITION,
            sqlite_where=DUE_CONDITION,
        ),
        Index("ix_invoices_tenant_created", "tenant_id", "created_at", "id"),
        # Debit notes find their original by FBR number.
        Index("ix_invoices_tenant_fbr_number", "tenant_id", "fbr_invoice_number"),
        Index("ix_invoices_original", "original_invoice_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    erp_reference: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the canonical submitted content: the same reference with other content
    # is refused, the same content is a harmless duplicate.
    content_sha256: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    invoice_type: Mapped[str] = mapped_column(String(16))
    invoice_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    # The normalised invoice (clients.fbr.payload) including the seller block as it was at
    # ingest; the FBR request body is a pure function of it.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    fbr_invoice_number: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # For a debit note: the original invoice (in this hub) that its invoice_ref_no names.
    original_invoice_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    fbr_dated: Mapped[str | None] = mapped_column(String(40), nullable=True)
    item_statuses: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # {"reason", "message", "violations": [{"path", "fbr_error_code", "message"}]}
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # W3C traceparent of the ingest span that queued the invoice: each delivery attempt's
    # span links to it, and GetInvoice returns its trace id. NULL when nothing was traced.
    traceparent: Mapped[str | None] = mapped_column(String(55), nullable=True)


class DeliveryAttempt(Base):
    """One attempt to deliver an invoice to FBR, recorded before the request is sent."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_invoice", "invoice_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # accepted / rejected / retryable / in_doubt; NULL while under way.
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fbr_error_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(200), nullable=True)
    worker: Mapped[str] = mapped_column(String(64))
    # The trace of the attempt's span (each attempt is a trace of its own).
    trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ResultEvent(Base):
    """An outcome event for StreamResults, numbered per tenant in commit order."""

    __tablename__ = "result_events"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # NULL for alerts, which are about the tenant's queue rather than one invoice.
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # erp_reference, state, fbr_invoice_number, fbr_dated, error (no raw FBR body).
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReferenceSnapshot(Base):
    """A copy of FBR's reference lists (``fbrhub refdata sync``); the newest one is used."""

    __tablename__ = "reference_snapshots"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    fetched_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
