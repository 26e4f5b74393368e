"""Tables of the privacy features: consent decisions, support messages, corrections of
buyer data, retention holds, and privacy requests.

Every table is keyed by ``tenant_id`` first. Accounts live with the access tables
(:mod:`server.db.models.access`), the audit trail in :mod:`server.db.models.audit`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, Boolean, Index, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.db.models.base import Base, BigIntId, UtcDateTime


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
