"""The hub's tables, as typed SQLAlchemy 2 models.

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
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.db.encryption import EncryptedString

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every backend.

    SQLite has no timezone-aware type and hands back naive values; this puts UTC back on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with named constraints (Alembic and SQLite need the names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class InvoiceState(StrEnum):
    """Lifecycle of an invoice at the hub (DESIGN.md §3); values are stored as text."""

    REJECTED_LOCAL = "REJECTED_LOCAL"
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    RETRY_WAIT = "RETRY_WAIT"
    ACCEPTED = "ACCEPTED"
    REJECTED_FBR = "REJECTED_FBR"
    IN_DOUBT = "IN_DOUBT"
    CANCELLED = "CANCELLED"


class FbrEnvironment(StrEnum):
    """Which FBR environment a tenant's token belongs to."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"


class Tenant(Base):
    """A seller using the hub: its FBR registration and credentials."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    seller_ntn_cnic: Mapped[str] = mapped_column(String(13))
    business_name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(300))
    fbr_environment: Mapped[str] = mapped_column(String(16))
    # Which FBR API the tenant's invoices go to: "di" (Digital Invoicing) or "pos" (IMS).
    channel: Mapped[str] = mapped_column(String(8), default="di", server_default="di")
    # POS channel only: the POSID FBR registered for the tenant's point of sale.
    pos_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # Sandbox only: the scenarios (SN001...) FBR assigned to the seller, comma-separated;
    # NULL means all of them.
    assigned_scenarios: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Encrypted at rest (server.db.encryption); the attribute holds the plain token.
    fbr_token: Mapped[str] = mapped_column(EncryptedString(1024))
    # Last sequence number handed to a result event of this tenant. Incremented under the
    # row lock of the transaction that writes the events, so sequence order = commit order
    # and a follower reading "seq > cursor" can never skip an event committed late.
    result_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ApiKey(Base):
    """An API key of a tenant. Only a SHA-256 of the secret part is stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


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
