"""Export: every record the hub holds about a data subject, as JSON-ready records."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import (
    Account,
    ConsentEvent,
    InvoiceAnnotation,
    RetentionHold,
    SupportMessage,
)
from server.privacy.subjects import Subject, buyer_invoices, load_account


@dataclass(frozen=True)
class ExportRecord:
    """One record held about the subject.

    Attributes:
        record_type: ``account``, ``consent_event``, ``support_message``, ``invoice``,
            ``invoice_annotation``, ``retention_hold`` or, last, ``summary``.
        data: the record's content, JSON-ready.
    """

    record_type: str
    data: dict[str, Any]


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


async def export_records(
    session: AsyncSession, tenant_id: uuid.UUID, subject: Subject, ref: str
) -> list[ExportRecord]:
    """Every record held about the subject, then a summary counting them by type.

    Raises:
        NotFound: no such account, or no invoice names the buyer.
    """
    if subject.account_id is not None:
        account = await load_account(session, tenant_id, subject.account_id)
        records = [_account_record(account), *await _account_history(session, account)]
    else:
        assert subject.buyer_ntn_cnic is not None
        invoices = await buyer_invoices(session, tenant_id, subject.buyer_ntn_cnic)
        records = [
            ExportRecord(
                "invoice",
                {
                    "invoice_id": str(invoice.id),
                    "erp_reference": invoice.erp_reference,
                    "state": invoice.state,
                    "invoice_date": _iso(invoice.invoice_date),
                    "fbr_invoice_number": invoice.fbr_invoice_number,
                    "received_at": _iso(invoice.created_at),
                    "invoice": invoice.payload,
                },
            )
            for invoice in invoices
        ]
    records += await _pseudonymous_records(session, tenant_id, ref)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.record_type] = counts.get(record.record_type, 0) + 1
    return [*records, ExportRecord("summary", {"record_counts": counts})]


def _account_record(account: Account) -> ExportRecord:
    return ExportRecord(
        "account",
        {
            "account_id": str(account.id),
            "username": account.username,
            "full_name": account.full_name,
            "email": account.email,
            "phone": account.phone,
            "role": account.role,
            "status": account.status,
            "password": "a bcrypt hash is held; it is not exported"
            if account.password_bcrypt
            else "none held",
            "created_at": _iso(account.created_at),
            "closed_at": _iso(account.closed_at),
            "anonymise_due_at": _iso(account.anonymise_due_at),
        },
    )


async def _account_history(session: AsyncSession, account: Account) -> list[ExportRecord]:
    """The account's consent decisions and support messages."""
    consents = await session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.tenant_id == account.tenant_id, ConsentEvent.account_id == account.id)
        .order_by(ConsentEvent.id)
    )
    messages = await session.scalars(
        select(SupportMessage)
        .where(
            SupportMessage.tenant_id == account.tenant_id,
            SupportMessage.account_id == account.id,
        )
        .order_by(SupportMessage.created_at)
    )
    return [
        *(
            ExportRecord(
                "consent_event",
                {
                    "purpose": consent.purpose,
                    "granted": consent.granted,
                    "source": consent.source,
                    "recorded_at": _iso(consent.recorded_at),
                    "request_id": consent.request_id,
                },
            )
            for consent in consents
        ),
        *(
            ExportRecord(
                "support_message",
                {
                    "id": str(message.id),
                    "body": message.body,
                    "created_at": _iso(message.created_at),
                },
            )
            for message in messages
        ),
    ]


async def _pseudonymous_records(
    session: AsyncSession, tenant_id: uuid.UUID, ref: str
) -> list[ExportRecord]:
    """Records kept under the subject's pseudonym: corrections and retention holds."""
    annotations = await session.scalars(
        select(InvoiceAnnotation)
        .where(InvoiceAnnotation.tenant_id == tenant_id, InvoiceAnnotation.subject_ref == ref)
        .order_by(InvoiceAnnotation.id)
    )
    holds = await session.scalars(
        select(RetentionHold)
        .where(RetentionHold.tenant_id == tenant_id, RetentionHold.subject_ref == ref)
        .order_by(RetentionHold.id)
    )
    return [
        *(
            ExportRecord(
                "invoice_annotation",
                {
                    "invoice_id": str(annotation.invoice_id),
                    "corrections": annotation.corrections,
                    "note": annotation.note,
                    "created_at": _iso(annotation.created_at),
                },
            )
            for annotation in annotations
        ),
        *(
            ExportRecord(
                "retention_hold",
                {
                    "invoice_id": str(hold.invoice_id),
                    "reason": hold.reason,
                    "hold_until": _iso(hold.hold_until),
                },
            )
            for hold in holds
        ),
    ]
