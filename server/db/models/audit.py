"""Tables of the audit trail: one hash chain of events per tenant, and its head.

The head row's lock serialises appends per tenant (:mod:`server.audit.trail`). Events never
hold personal data.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, BigInteger, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.db.models.base import Base, UtcDateTime


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
