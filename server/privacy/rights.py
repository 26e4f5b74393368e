"""Data-subject rights: export, correction, erasure within retention, consent, closure.

A subject is a platform account (by id) or a buyer on the tenant's invoices (by NTN/CNIC).
Subjects are named outside this module only by :func:`subject_ref`, a keyed pseudonym, so
that audit events, privacy-request records and telemetry never hold the identifier itself.

Invoice records are never altered once they may be fiscal records: corrections become
annotations, and erasure keeps them under a retention hold (Sales Tax Act 1990 s.22 and SRO
69(I)/2025: at least 5 years; the hub's default is 6).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.api.errors import HubError, invalid_argument, not_found
from server.audit.trail import NewAuditEvent, append_audit_events
from server.db.engine import Database
from server.db.models import Invoice, InvoiceState
from server.db.privacy_models import (
    Account,
    AccountStatus,
    ConsentEvent,
    InvoiceAnnotation,
    PrivacyRequest,
    RetentionHold,
    SupportMessage,
)

ACCOUNT_FIELDS = ("full_name", "email", "phone")
BUYER_FIELDS = ("buyer_business_name", "buyer_address", "buyer_province")
# POS invoices name their buyer in these fields (clients.fbr.pos.payload).
POS_BUYER_FIELDS = ("buyer_ntn", "buyer_cnic", "buyer_name", "buyer_phone_number")
CONSENT_PURPOSES = ("marketing", "analytics", "product_updates", "support_contact")
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
RETENTION_REASON = (
    "tax invoice record: must be kept for {years} years from receipt (Sales Tax Act 1990 "
    "s.22, SRO 69(I)/2025); the FBR record cannot be altered"
)
DEBIT_NOTE_ROUTE = (
    "FBR has accepted {count} of these invoices; the stored FBR record is never altered. The "
    "legal route to correct an accepted invoice is a debit note (or credit invoice on POS) "
    "issued from the ERP that references the original FBR invoice number."
)
PSEUDONYM = "ERASED"


@dataclass(frozen=True)
class Subject:
    """Who a request is about: exactly one of the two is set."""

    account_id: uuid.UUID | None = None
    buyer_ntn_cnic: str | None = None

    def key(self) -> str:
        """A stable text form, used only to derive the pseudonym."""
        return f"account:{self.account_id}" if self.account_id else f"buyer:{self.buyer_ntn_cnic}"


def subject_ref(secret: bytes, tenant_id: uuid.UUID, subject: Subject) -> str:
    """The keyed pseudonym of a subject (32 hex digits); the same subject, the same ref."""
    message = tenant_id.bytes + subject.key().encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def retention_until(received: dt.datetime, years: int) -> dt.datetime:
    """The end of the retention period of a record received at ``received``."""
    try:
        return received.replace(year=received.year + years)
    except ValueError:  # 29 February
        return received.replace(year=received.year + years, day=28)


def precondition(reason: str, message: str) -> HubError:
    """A FAILED_PRECONDITION error."""
    return HubError(grpc.StatusCode.FAILED_PRECONDITION, reason, message)


# --------------------------------------------------------------------------------------
# Idempotency and records of requests


@dataclass
class Outcome:
    """What a privacy request did: the serialised response and facts for the report."""

    response: bytes
    facts: dict[str, str] = field(default_factory=dict)
    extra_events: list[NewAuditEvent] = field(default_factory=list)


@dataclass(frozen=True)
class RequestContext:
    """Who asks, for whom, under which request id."""

    tenant_id: uuid.UUID
    actor: str
    request_id: str
    kind: str
    subject_ref: str


Work = Callable[[AsyncSession], Awaitable[Outcome]]


def _audit(ctx: RequestContext, outcome: str, details: dict[str, str]) -> NewAuditEvent:
    return NewAuditEvent(
        tenant_id=ctx.tenant_id,
        actor=ctx.actor,
        action=f"privacy.{ctx.kind.lower()}",
        resource=f"subjects/{ctx.subject_ref}",
        outcome=outcome,
        request_id=ctx.request_id,
        details=details,
    )


async def run_request(
    db: Database, ctx: RequestContext, work: Work, now: dt.datetime, *, replay: bool = True
) -> bytes:
    """Run a privacy request once per request id, recording and auditing it.

    A repeated request id returns the stored response (and is audited as a replay); the same
    id for another kind of request or another subject is INVALID_ARGUMENT. A request that
    failed is recorded as FAILED, audited, and may be retried with the same id. With
    ``replay=False`` (exports) a repeated id runs the work again on today's data.
    """
    for attempt in range(2):
        try:
            return await _run_once(db, ctx, work, now, replay)
        except IntegrityError:  # a concurrent call with the same id committed first
            if attempt:
                raise
    raise AssertionError("unreachable")


async def _run_once(
    db: Database, ctx: RequestContext, work: Work, now: dt.datetime, replay: bool
) -> bytes:
    try:
        async with db.write(f"privacy.{ctx.kind.lower()}") as session:
            stored = await session.get(PrivacyRequest, (ctx.tenant_id, ctx.request_id))
            if stored is not None and (
                stored.kind != ctx.kind or stored.subject_ref != ctx.subject_ref
            ):
                raise invalid_argument(
                    "request_id",
                    "request_id was already used for another request",
                    "REQUEST_ID_REUSED",
                )
            if replay and stored is not None and stored.status == "COMPLETED":
                await append_audit_events(session, [_audit(ctx, "OK", {"replay": "true"})], now)
                return stored.response or b""
            outcome = await work(session)
            values = {
                "kind": ctx.kind,
                "subject_ref": ctx.subject_ref,
                "status": "COMPLETED",
                "outcome": outcome.facts,
                "response": outcome.response,
                "actor": ctx.actor,
                "created_at": now,
            }
            if stored is None:
                session.add(
                    PrivacyRequest(tenant_id=ctx.tenant_id, request_id=ctx.request_id, **values)
                )
            else:
                for name, value in values.items():
                    setattr(stored, name, value)
            await session.flush()
            await append_audit_events(
                session, [*outcome.extra_events, _audit(ctx, "OK", outcome.facts)], now
            )
            return outcome.response
    except HubError as error:
        if error.reason != "REQUEST_ID_REUSED":
            await _record_failure(db, ctx, error, now)
        else:
            async with db.write("privacy.audit") as session:
                await append_audit_events(session, [_audit(ctx, error.reason, {})], now)
        raise


async def _record_failure(
    db: Database, ctx: RequestContext, error: HubError, now: dt.datetime
) -> None:
    async with db.write("privacy.failed") as session:
        stored = await session.get(PrivacyRequest, (ctx.tenant_id, ctx.request_id))
        if stored is None:
            session.add(
                PrivacyRequest(
                    tenant_id=ctx.tenant_id,
                    request_id=ctx.request_id,
                    kind=ctx.kind,
                    subject_ref=ctx.subject_ref,
                    status="FAILED",
                    outcome={"reason": error.reason},
                    response=None,
                    actor=ctx.actor,
                    created_at=now,
                )
            )
        await append_audit_events(session, [_audit(ctx, error.reason, {})], now)


async def audit_read(db: Database, ctx: RequestContext, now: dt.datetime) -> None:
    """Audit a read-only privacy call (nothing to make idempotent)."""
    async with db.write("privacy.audit") as session:
        await append_audit_events(session, [_audit(ctx, "OK", {})], now)


# --------------------------------------------------------------------------------------
# Lookups


async def load_account(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID, *, for_update: bool = False
) -> Account:
    """The tenant's account, or NOT_FOUND (also for another tenant's account)."""
    query = select(Account).where(Account.tenant_id == tenant_id, Account.id == account_id)
    account = await session.scalar(query.with_for_update() if for_update else query)
    if account is None:
        raise not_found("account")
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


# --------------------------------------------------------------------------------------
# Export


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


async def export_records(
    session: AsyncSession, tenant_id: uuid.UUID, subject: Subject, ref: str
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every record held about the subject, as (record type, JSON-ready dict)."""
    counts: dict[str, int] = {}

    def counted(kind: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        counts[kind] = counts.get(kind, 0) + 1
        return kind, record

    if subject.account_id is not None:
        account = await load_account(session, tenant_id, subject.account_id)
        yield counted(
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
        for consent in await session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.tenant_id == tenant_id, ConsentEvent.account_id == account.id)
            .order_by(ConsentEvent.id)
        ):
            yield counted(
                "consent_event",
                {
                    "purpose": consent.purpose,
                    "granted": consent.granted,
                    "source": consent.source,
                    "recorded_at": _iso(consent.recorded_at),
                    "request_id": consent.request_id,
                },
            )
        for message in await session.scalars(
            select(SupportMessage)
            .where(SupportMessage.tenant_id == tenant_id, SupportMessage.account_id == account.id)
            .order_by(SupportMessage.created_at)
        ):
            yield counted(
                "support_message",
                {
                    "id": str(message.id),
                    "body": message.body,
                    "created_at": _iso(message.created_at),
                },
            )
    else:
        assert subject.buyer_ntn_cnic is not None
        invoices = list(
            await session.scalars(buyer_invoices_query(tenant_id, subject.buyer_ntn_cnic))
        )
        if not invoices:
            raise not_found("subject")
        for invoice in invoices:
            yield counted(
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
    for annotation in await session.scalars(
        select(InvoiceAnnotation)
        .where(InvoiceAnnotation.tenant_id == tenant_id, InvoiceAnnotation.subject_ref == ref)
        .order_by(InvoiceAnnotation.id)
    ):
        yield counted(
            "invoice_annotation",
            {
                "invoice_id": str(annotation.invoice_id),
                "corrections": annotation.corrections,
                "note": annotation.note,
                "created_at": _iso(annotation.created_at),
            },
        )
    for hold in await session.scalars(
        select(RetentionHold)
        .where(RetentionHold.tenant_id == tenant_id, RetentionHold.subject_ref == ref)
        .order_by(RetentionHold.id)
    ):
        yield counted(
            "retention_hold",
            {
                "invoice_id": str(hold.invoice_id),
                "reason": hold.reason,
                "hold_until": _iso(hold.hold_until),
            },
        )
    yield "summary", {"record_counts": dict(counts)}


# --------------------------------------------------------------------------------------
# Correction


@dataclass(frozen=True)
class AnnotatedInvoice:
    """An invoice that received a correction annotation."""

    invoice_id: uuid.UUID
    state: str
    fbr_accepted: bool


@dataclass(frozen=True)
class CorrectionResult:
    """What a correction did."""

    corrected_fields: list[str]
    annotations: list[AnnotatedInvoice]
    legal_route: str


async def correct(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    subject: Subject,
    ref: str,
    corrections: dict[str, str],
    *,
    note: str,
    request_id: str,
    now: dt.datetime,
) -> CorrectionResult:
    """Correct an account in place, or annotate a buyer's invoices (never altering them)."""
    allowed = ACCOUNT_FIELDS if subject.account_id is not None else BUYER_FIELDS
    for index, name in enumerate(corrections):
        if name not in allowed:
            raise invalid_argument(
                f"corrections[{index}].field",
                f"field must be one of {', '.join(allowed)}",
                "FIELD_NOT_CORRECTABLE",
            )
    if subject.account_id is not None:
        account = await load_account(session, tenant_id, subject.account_id, for_update=True)
        if account.status == AccountStatus.ANONYMISED:
            raise precondition("ACCOUNT_ANONYMISED", "the account has been anonymised")
        for name, value in corrections.items():
            setattr(account, name, value)
        return CorrectionResult(sorted(corrections), [], "")
    assert subject.buyer_ntn_cnic is not None
    invoices = list(await session.scalars(buyer_invoices_query(tenant_id, subject.buyer_ntn_cnic)))
    if not invoices:
        raise not_found("subject")
    annotated = []
    for invoice in invoices:
        session.add(
            InvoiceAnnotation(
                tenant_id=tenant_id,
                invoice_id=invoice.id,
                subject_ref=ref,
                corrections=dict(corrections),
                note=note,
                request_id=request_id,
                created_at=now,
            )
        )
        annotated.append(
            AnnotatedInvoice(invoice.id, invoice.state, invoice.state == InvoiceState.ACCEPTED)
        )
    accepted = sum(a.fbr_accepted for a in annotated)
    route = DEBIT_NOTE_ROUTE.format(count=accepted) if accepted else ""
    return CorrectionResult([], annotated, route)


# --------------------------------------------------------------------------------------
# Erasure and anonymisation


@dataclass(frozen=True)
class ErasureVerdict:
    """What erasure does to one record."""

    resource: str
    action: str  # DELETED, PSEUDONYMISED, RETAINED
    fields: tuple[str, ...] = ()
    retained_until: dt.datetime | None = None
    retention_reason: str = ""


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
) -> list[ErasureVerdict]:
    """Decide (and with ``force`` apply) erasure of everything held about a subject."""
    verdicts: list[ErasureVerdict] = []
    if subject.account_id is not None:
        account = await load_account(session, tenant_id, subject.account_id, for_update=True)
        verdicts.extend(await anonymise_account(session, account, force=force, now=now))
    else:
        assert subject.buyer_ntn_cnic is not None
        invoices = list(
            await session.scalars(buyer_invoices_query(tenant_id, subject.buyer_ntn_cnic))
        )
        if not invoices:
            raise not_found("subject")
        reason = RETENTION_REASON.format(years=retention_years)
        for invoice in invoices:
            resource = f"invoices/{invoice.id}"
            if invoice.state in FISCAL_STATES:
                until = retention_until(invoice.created_at, retention_years)
                verdicts.append(ErasureVerdict(resource, "RETAINED", (), until, reason))
                if force:
                    session.add(
                        RetentionHold(
                            tenant_id=tenant_id,
                            invoice_id=invoice.id,
                            subject_ref=ref,
                            reason=reason,
                            hold_until=until,
                            request_id=request_id,
                            created_at=now,
                        )
                    )
                continue
            # Never a fiscal record (rejected locally or by FBR, or cancelled): the buyer's
            # identity can go; the row stays so the ERP's reference keeps its outcome.
            verdicts.append(
                ErasureVerdict(resource, "PSEUDONYMISED", ("buyer_ntn_cnic", *BUYER_FIELDS))
            )
            if force:
                payload = dict(invoice.payload)
                if payload.get("channel") == "pos":
                    for name in POS_BUYER_FIELDS:
                        if payload.get(name):
                            payload[name] = f"{PSEUDONYM}-{ref[:12]}"
                else:
                    payload["buyer_ntn_cnic"] = f"{PSEUDONYM}-{ref[:12]}"
                    for name in BUYER_FIELDS:
                        payload[name] = (
                            PSEUDONYM if name != "buyer_province" else payload.get(name, "")
                        )
                invoice.payload = payload
    annotations = list(
        await session.scalars(
            select(InvoiceAnnotation).where(
                InvoiceAnnotation.tenant_id == tenant_id, InvoiceAnnotation.subject_ref == ref
            )
        )
    )
    for annotation in annotations:
        verdicts.append(
            ErasureVerdict(
                f"invoice_annotations/{annotation.id}", "DELETED", ("corrections", "note")
            )
        )
    if force and annotations:
        await session.execute(
            delete(InvoiceAnnotation).where(
                InvoiceAnnotation.tenant_id == tenant_id, InvoiceAnnotation.subject_ref == ref
            )
        )
    return verdicts


async def anonymise_account(
    session: AsyncSession, account: Account, *, force: bool, now: dt.datetime
) -> list[ErasureVerdict]:
    """Pseudonymise an account and delete its consents and support messages."""
    tenant_id = account.tenant_id
    verdicts = [
        ErasureVerdict(
            f"accounts/{account.id}",
            "PSEUDONYMISED",
            ("username", "full_name", "email", "phone", "password_bcrypt"),
        )
    ]
    consents = list(
        await session.scalars(
            select(ConsentEvent.id).where(
                ConsentEvent.tenant_id == tenant_id, ConsentEvent.account_id == account.id
            )
        )
    )
    messages = list(
        await session.scalars(
            select(SupportMessage.id).where(
                SupportMessage.tenant_id == tenant_id, SupportMessage.account_id == account.id
            )
        )
    )
    verdicts += [ErasureVerdict(f"consent_events/{i}", "DELETED", ("source",)) for i in consents]
    verdicts += [ErasureVerdict(f"support_messages/{i}", "DELETED", ("body",)) for i in messages]
    if force:
        account.username = f"erased-{account.id.hex[:12]}"
        account.full_name = account.email = account.phone = account.password_bcrypt = ""
        account.status = AccountStatus.ANONYMISED
        account.anonymised_at = now
        await session.execute(
            delete(ConsentEvent).where(
                ConsentEvent.tenant_id == tenant_id, ConsentEvent.account_id == account.id
            )
        )
        await session.execute(
            delete(SupportMessage).where(
                SupportMessage.tenant_id == tenant_id, SupportMessage.account_id == account.id
            )
        )
    return verdicts


# --------------------------------------------------------------------------------------
# Consent and closure


async def record_consent(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    purpose: str,
    granted: bool,
    source: str,
    request_id: str,
    now: dt.datetime,
) -> ConsentEvent:
    """Append a consent decision to an active account's history."""
    account = await load_account(session, tenant_id, account_id)
    if account.status != AccountStatus.ACTIVE:
        raise precondition(
            "ACCOUNT_NOT_ACTIVE", "consent can only be recorded for an active account"
        )
    event = ConsentEvent(
        tenant_id=tenant_id,
        account_id=account_id,
        purpose=purpose,
        granted=granted,
        source=source,
        request_id=request_id,
        recorded_at=now,
    )
    session.add(event)
    await session.flush()
    return event


async def consent_history(
    session: AsyncSession, tenant_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[list[ConsentEvent], list[ConsentEvent]]:
    """(current decision per purpose, full history oldest first) of an account."""
    await load_account(session, tenant_id, account_id)
    history = list(
        await session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.tenant_id == tenant_id, ConsentEvent.account_id == account_id)
            .order_by(ConsentEvent.id)
        )
    )
    latest: dict[str, ConsentEvent] = {}
    for event in history:
        latest[event.purpose] = event
    return [latest[p] for p in sorted(latest)], history


async def close_account(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    anonymise_after: dt.timedelta,
    now: dt.datetime,
) -> Account:
    """Close an account and schedule its anonymisation."""
    account = await load_account(session, tenant_id, account_id, for_update=True)
    if account.status != AccountStatus.ACTIVE:
        raise precondition("ACCOUNT_NOT_ACTIVE", "the account is already closed")
    account.status = AccountStatus.CLOSED
    account.closed_at = now
    account.anonymise_due_at = now + anonymise_after
    return account


async def list_requests(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    before: tuple[dt.datetime, str] | None,
    limit: int,
) -> Sequence[PrivacyRequest]:
    """Privacy requests of a tenant, newest first, after a (created_at, request_id) key."""
    query = select(PrivacyRequest).where(PrivacyRequest.tenant_id == tenant_id)
    if before is not None:
        created, request_id = before
        query = query.where(
            (PrivacyRequest.created_at < created)
            | ((PrivacyRequest.created_at == created) & (PrivacyRequest.request_id < request_id))
        )
    rows = await session.scalars(
        query.order_by(PrivacyRequest.created_at.desc(), PrivacyRequest.request_id.desc()).limit(
            limit
        )
    )
    return list(rows)
