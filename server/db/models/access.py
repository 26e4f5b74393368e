"""Tables of who may use the hub: tenants, their API keys, and platform accounts.

Every table that holds tenant data is keyed by ``tenant_id`` first, so that every query can
be scoped to one tenant.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from server.db.encryption import EncryptedString
from server.db.models.base import Base, UtcDateTime


class FbrEnvironment(StrEnum):
    """Which FBR environment a tenant's token belongs to."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"


class AccountStatus(StrEnum):
    """Lifecycle of a platform account."""

    ACTIVE = "ACTIVE"
    # Closed by the holder; non-regulatory data is anonymised by the retention sweeper.
    CLOSED = "CLOSED"
    # Personal fields replaced by pseudonyms (after closing, or by a forced erasure).
    ANONYMISED = "ANONYMISED"


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
