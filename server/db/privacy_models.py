"""Tables of the privacy, audit and account features (issue 4).

Kept apart from ``server.db.models`` (the invoice path) but on the same ``Base``, so one
metadata describes the whole schema. Every table is keyed by ``tenant_id`` first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.db.models import Base, BigIntId, UtcDateTime


class AccountStatus(StrEnum):
    """Lifecycle of a platform account."""

    ACTIVE = "ACTIVE"
    # Closed by the holder; non-regulatory data is anonymised by the retention sweeper.
    CLOSED = "CLOSED"
    # Personal fields replaced by pseudonyms (after closing, or by a forced erasure).
    ANONYMISED = "ANONYMISED"


class Account(Base):
    """A person using SmartInvoicing on behalf of a tenant."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "username", name="uq_accounts_tenant_username"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    username: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(32))
    # bcrypt hash; empty once the account is anonymised.
    password_bcrypt: Mapped[str] = mapped_column(String(72))
    role: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Closed accounts are anonymised no later than this (at most 90 days after closing).
    anonymise_due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    anonymised_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ConsentEvent(Base):
    """One consent decision (given or withdrawn) of an account for one purpose."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_account", "tenant_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SupportMessage(Base):
    """A support message from an account holder (free text: personal data)."""

    __tablename__ = "support_messages"
    __table_args__ = (Index("ix_support_messages_account", "tenant_id", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class InvoiceAnnotation(Base):
    """A correction of buyer data on an invoice; the invoice itself is never altered."""

    __tablename__ = "invoice_annotations"
    __table_args__ = (Index("ix_invoice_annotations_invoice", "tenant_id", "invoice_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    invoice_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    subject_ref: Mapped[str] = mapped_column(String(32))
    # {"field": "corrected value", ...}: personal data, exported and erased with the subject.
    corrections: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(String(500))
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class RetentionHold(Base):
    """An invoice kept despite an erasure request, because the law requires it."""

    __tablename__ = "retention_holds"
    __table_args__ = (Index("ix_retention_holds_invoice", "tenant_id", "invoice_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    invoice_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    subject_ref: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(300))
    hold_until: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class PrivacyRequest(Base):
    """A privacy request: the idempotency record and the compliance report line.

    ``response`` holds the serialised protobuf response of the first call, replayed when the
    same request id comes again. It never holds raw subject identifiers.
    """

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_created", "tenant_id", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_ref: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    response: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class AuditChainHead(Base):
    """The end of a tenant's audit chain. Its row lock serialises appends per tenant."""

    __tablename__ = "audit_chain_heads"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """One audited act, hash-chained per tenant. Never holds personal data."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_time", "tenant_id", "event_time"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    trace_id: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, str]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


ALL_TABLES = (
    "accounts",
    "consent_events",
    "support_messages",
    "invoice_annotations",
    "retention_holds",
    "privacy_requests",
    "audit_chain_heads",
    "audit_events",
)
