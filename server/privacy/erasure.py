"""Erasure within the legal retention of invoice records, and anonymisation of accounts.

What happens to each record held about a subject:

- an account is pseudonymised (the row keeps the ids other records point to), its consent
  decisions and support messages deleted;
- an invoice that is, or may become, a record FBR holds is kept unchanged until its
  retention ends (Sales Tax Act 1990 s.22, SRO 69(I)/2025: at least 5 years from receipt),
  and a retention hold records until when and why; an accepted invoice already past its
  retention is deleted at once (and audited as ``invoice.purged``), rather than left for the
  next retention sweep behind an answer naming a date already past;
- an invoice that never became a fiscal record (rejected locally or by FBR, cancelled) has
  the buyer's identity pseudonymised; the row stays so the ERP's reference keeps its outcome;
- corrections recorded against the subject's invoices are deleted.

Without ``force`` nothing changes: the answer is the preview of the same decisions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.channels import Channel
from server.audit.trail import NewAuditEvent, append_audit_events
from server.db.models import (
    Account,
    AccountStatus,
    ConsentEvent,
    DeliveryAttempt,
    Invoice,
    InvoiceAnnotation,
    InvoiceState,
    ResultEvent,
    RetentionHold,
    SupportMessage,
)
from server.privacy.subjects import (
    BUYER_FIELDS,
    FISCAL_STATES,
    POS_BUYER_FIELDS,
    Subject,
    buyer_invoices,
    load_account,
)

RETENTION_REASON = (
    "tax invoice record: must be kept for {years} years from receipt (Sales Tax Act 1990 "
    "s.22, SRO 69(I)/2025); the FBR record cannot be altered"
)
PSEUDONYM = "ERASED"
IN_FLIGHT_REASON = (
    "past its retention but still with FBR: kept until FBR's outcome is known, then purged"
)


@dataclass(frozen=True)
class ErasureVerdict:
    """What erasure does to one record.

    Attributes:
        resource: ``accounts/<id>``, ``invoices/<id>``, ``consent_events/<id>``...
        action: ``DELETED``, ``PSEUDONYMISED`` or ``RETAINED``.
        fields: the fields the action touches.
        retained_until: for ``RETAINED``, when retention ends.
        retention_reason: for ``RETAINED``, the legal reason.
    """

    resource: str
    action: str
    fields: tuple[str, ...] = ()
    retained_until: dt.datetime | None = None
    retention_reason: str = ""


@dataclass(frozen=True)
class ErasureReport:
    """The decisions of an erasure, applied (``dry_run`` False) or previewed."""

    dry_run: bool
    verdicts: list[ErasureVerdict]

    def to_record(self) -> dict[str, Any]:
        """The report as JSON-ready data (kept for replays of the request id)."""
        return {
            "dry_run": self.dry_run,
            "verdicts": [
                {
                    "resource": v.resource,
                    "action": v.action,
                    "fields": list(v.fields),
                    "retained_until": v.retained_until.isoformat() if v.retained_until else None,
                    "retention_reason": v.retention_reason,
                }
                for v in self.verdicts
            ],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ErasureReport:
        """The report read back from :meth:`to_record`."""
        return cls(
            bool(record["dry_run"]),
            [
                ErasureVerdict(
                    v["resource"],
                    v["action"],
                    tuple(v["fields"]),
                    dt.datetime.fromisoformat(v["retained_until"]) if v["retained_until"] else None,
                    v["retention_reason"],
                )
                for v in record["verdicts"]
            ],
        )

    def counts(self) -> dict[str, str]:
        """How many records each action touches, for the request's report."""
        facts: dict[str, str] = {}
        for verdict in self.verdicts:
            key = verdict.action.lower()
            facts[key] = str(int(facts.get(key, "0")) + 1)
        return facts


def retention_until(received: dt.datetime, years: int) -> dt.datetime:
    """The end of the retention period of a record received at ``received``."""
    try:
        return received.replace(year=received.year + years)
    except ValueError:  # 29 February
        return received.replace(year=received.year + years, day=28)


async def erase(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    subject: Subject,
    ref: str,
    *,
    force: bool,
    retention_years: int,
    request_id: str,
    now: dt.datetime,
) -> ErasureReport:
    """Decide (and with ``force`` apply) erasure of everything held about a subject.

    Raises:
        NotFound: no such account, or no invoice names the buyer.
    """
    verdicts: list[ErasureVerdict] = []
    if subject.account_id is not None:
        account = await load_account(session, tenant_id, subject.account_id, for_update=True)
        verdicts += await anonymise_account(session, account, force=force, now=now)
    else:
        assert subject.buyer_ntn_cnic is not None
        hold = _Holder(session, tenant_id, ref, request_id, retention_years, now)
        past: list[Invoice] = []
        for invoice in await buyer_invoices(session, tenant_id, subject.buyer_ntn_cnic):
            if invoice.state == InvoiceState.ACCEPTED and hold.past_retention(invoice):
                past.append(invoice)
            elif invoice.state in FISCAL_STATES:
                verdicts.append(hold.verdict(invoice, force=force))
            else:
                verdicts.append(_pseudonymise_buyer(invoice, ref, force=force))
        verdicts += await _delete_past_retention(session, past, hold, force=force)
    verdicts += await _erase_annotations(session, tenant_id, ref, force=force)
    return ErasureReport(not force, verdicts)


@dataclass
class _Holder:
    """Keeps fiscal invoices, recording a retention hold for each when forced."""

    session: AsyncSession
    tenant_id: uuid.UUID
    ref: str
    request_id: str
    retention_years: int
    now: dt.datetime

    def past_retention(self, invoice: Invoice) -> bool:
        """Whether the invoice's retention has ended."""
        return retention_until(invoice.created_at, self.retention_years) <= self.now

    def verdict(self, invoice: Invoice, *, force: bool) -> ErasureVerdict:
        if self.past_retention(invoice):  # in flight: FBR's outcome decides, then the sweep
            return ErasureVerdict(f"invoices/{invoice.id}", "RETAINED", (), None, IN_FLIGHT_REASON)
        reason = RETENTION_REASON.format(years=self.retention_years)
        until = retention_until(invoice.created_at, self.retention_years)
        if force:
            self.session.add(
                RetentionHold(
                    tenant_id=self.tenant_id,
                    invoice_id=invoice.id,
                    subject_ref=self.ref,
                    reason=reason,
                    hold_until=until,
                    request_id=self.request_id,
                    created_at=self.now,
                )
            )
        return ErasureVerdict(f"invoices/{invoice.id}", "RETAINED", (), until, reason)


async def _delete_past_retention(
    session: AsyncSession, invoices: list[Invoice], hold: _Holder, *, force: bool
) -> list[ErasureVerdict]:
    """Delete accepted invoices whose retention has ended, as the retention sweep would."""
    if force and invoices:
        await purge_invoices(session, [invoice.id for invoice in invoices])
        await append_audit_events(
            session,
            [
                NewAuditEvent(
                    tenant_id=hold.tenant_id,
                    actor="system:erasure",
                    action="invoice.purged",
                    resource=f"invoices/{invoice.id}",
                    request_id=hold.request_id,
                    details={
                        "retention_years": str(hold.retention_years),
                        "reason": "erasure past retention",
                    },
                )
                for invoice in invoices
            ],
            hold.now,
        )
    return [
        ErasureVerdict(f"invoices/{invoice.id}", "DELETED", ("invoice",)) for invoice in invoices
    ]


async def purge_invoices(session: AsyncSession, ids: list[uuid.UUID]) -> None:
    """Delete invoices with their attempts, result events, annotations and holds."""
    for dependent in (DeliveryAttempt, ResultEvent, InvoiceAnnotation, RetentionHold):
        await session.execute(delete(dependent).where(dependent.invoice_id.in_(ids)))
    await session.execute(delete(Invoice).where(Invoice.id.in_(ids)))


def _pseudonymise_buyer(invoice: Invoice, ref: str, *, force: bool) -> ErasureVerdict:
    """Replace the buyer's identity on an invoice that never became a fiscal record."""
    if force:
        payload = dict(invoice.payload)
        if invoice.channel == Channel.POS:
            for name in POS_BUYER_FIELDS:
                if payload.get(name):
                    payload[name] = f"{PSEUDONYM}-{ref[:12]}"
        else:
            payload["buyer_ntn_cnic"] = f"{PSEUDONYM}-{ref[:12]}"
            for name in BUYER_FIELDS:
                payload[name] = PSEUDONYM if name != "buyer_province" else payload.get(name, "")
        invoice.payload = payload
    return ErasureVerdict(
        f"invoices/{invoice.id}", "PSEUDONYMISED", ("buyer_ntn_cnic", *BUYER_FIELDS)
    )


async def _erase_annotations(
    session: AsyncSession, tenant_id: uuid.UUID, ref: str, *, force: bool
) -> list[ErasureVerdict]:
    """Corrections recorded under the subject's pseudonym go with the subject."""
    mine = (InvoiceAnnotation.tenant_id == tenant_id, InvoiceAnnotation.subject_ref == ref)
    ids = list(await session.scalars(select(InvoiceAnnotation.id).where(*mine)))
    if force and ids:
        await session.execute(delete(InvoiceAnnotation).where(*mine))
    return [
        ErasureVerdict(f"invoice_annotations/{i}", "DELETED", ("corrections", "note")) for i in ids
    ]


async def anonymise_account(
    session: AsyncSession, account: Account, *, force: bool, now: dt.datetime
) -> list[ErasureVerdict]:
    """Pseudonymise an account and delete its consents and support messages."""
    consents = (ConsentEvent.tenant_id == account.tenant_id, ConsentEvent.account_id == account.id)
    messages = (
        SupportMessage.tenant_id == account.tenant_id,
        SupportMessage.account_id == account.id,
    )
    consent_ids = list(await session.scalars(select(ConsentEvent.id).where(*consents)))
    message_ids = list(await session.scalars(select(SupportMessage.id).where(*messages)))
    if force:
        account.username = f"erased-{account.id.hex[:12]}"
        account.full_name = account.email = account.phone = account.password_bcrypt = ""
        account.status = AccountStatus.ANONYMISED
        account.anonymised_at = now
        await session.execute(delete(ConsentEvent).where(*consents))
        await session.execute(delete(SupportMessage).where(*messages))
    return [
        ErasureVerdict(
            f"accounts/{account.id}",
            "PSEUDONYMISED",
            ("username", "full_name", "email", "phone", "password_bcrypt"),
        ),
        *(ErasureVerdict(f"consent_events/{i}", "DELETED", ("source",)) for i in consent_ids),
        *(ErasureVerdict(f"support_messages/{i}", "DELETED", ("body",)) for i in message_ids),
    ]
