"""Who a privacy request is about, named only by a keyed pseudonym outside this area.

A subject is a platform account (by id) or a buyer on the tenant's invoices (by NTN/CNIC).
Audit events, privacy-request records and telemetry name it only by :func:`subject_ref`, so
they never hold the identifier itself.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Account, Invoice, InvoiceState
from server.errors import NotFound

ACCOUNT_FIELDS = ("full_name", "email", "phone")
BUYER_FIELDS = ("buyer_business_name", "buyer_address", "buyer_province")
# POS invoices name their buyer in these fields (clients.fbr.pos.payload).
POS_BUYER_FIELDS = ("buyer_ntn", "buyer_cnic", "buyer_name", "buyer_phone_number")
# States in which an invoice is, or may become, a record FBR holds: never altered or erased.
FISCAL_STATES = frozenset(
    {
        InvoiceState.QUEUED,
        InvoiceState.SENDING,
        InvoiceState.RETRY_WAIT,
        InvoiceState.IN_DOUBT,
        InvoiceState.ACCEPTED,
    }
)


@dataclass(frozen=True)
class Subject:
    """Who a request is about: exactly one of the two is set."""

    account_id: uuid.UUID | None = None
    buyer_ntn_cnic: str | None = None

    def key(self) -> str:
        """A stable text form, used only to derive the pseudonym."""
        return f"account:{self.account_id}" if self.account_id else f"buyer:{self.buyer_ntn_cnic}"


def subject_secret(cursor_secret: bytes) -> bytes:
    """The key of subject pseudonyms, derived from the hub's cursor secret."""
    return hmac.new(cursor_secret, b"subject-ref", hashlib.sha256).digest()


def subject_ref(secret: bytes, tenant_id: uuid.UUID, subject: Subject) -> str:
    """The keyed pseudonym of a subject (32 hex digits); the same subject, the same ref."""
    message = tenant_id.bytes + subject.key().encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


async def load_account(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID, *, for_update: bool = False
) -> Account:
    """The tenant's account, or NotFound (also for another tenant's account)."""
    query = select(Account).where(Account.tenant_id == tenant_id, Account.id == account_id)
    account = await session.scalar(query.with_for_update() if for_update else query)
    if account is None:
        raise NotFound("account")
    return account


def buyer_invoices_query(tenant_id: uuid.UUID, ntn_cnic: str) -> Any:
    """Invoices of the tenant whose buyer is ``ntn_cnic`` (DI buyer, or POS buyer NTN/CNIC)."""
    return (
        select(Invoice)
        .where(
            Invoice.tenant_id == tenant_id,
            or_(
                Invoice.payload["buyer_ntn_cnic"].as_string() == ntn_cnic,
                Invoice.payload["buyer_cnic"].as_string() == ntn_cnic,
                Invoice.payload["buyer_ntn"].as_string() == ntn_cnic,
            ),
        )
        .order_by(Invoice.created_at, Invoice.id)
    )


async def buyer_invoices(
    session: AsyncSession, tenant_id: uuid.UUID, ntn_cnic: str
) -> list[Invoice]:
    """The buyer's invoices, oldest first; NotFound("subject") when there are none."""
    invoices = list(await session.scalars(buyer_invoices_query(tenant_id, ntn_cnic)))
    if not invoices:
        raise NotFound("subject")
    return invoices
