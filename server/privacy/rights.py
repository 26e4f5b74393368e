"""Data-subject rights: export, correction, erasure within retention, consent, closure.

:class:`PrivacyRights` is what the API calls: each right runs once per request id
(:mod:`server.privacy.requests`), inside one transaction with its record and audit event,
naming the subject only by its pseudonym. Invoice records are never altered once they may
be fiscal records: corrections become annotations, and erasure keeps them under a retention
hold (Sales Tax Act 1990 s.22 and SRO 69(I)/2025: at least 5 years; the hub's default is 6).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.engine import Database
from server.db.models import PrivacyRequest
from server.privacy import consent, correction, erasure, export
from server.privacy.consent import Closure, ConsentHistory, ConsentRecord
from server.privacy.correction import CorrectionResult
from server.privacy.erasure import ErasureReport
from server.privacy.export import ExportRecord
from server.privacy.requests import (
    Done,
    RequestContext,
    RequestPosition,
    audit_read,
    list_requests,
    run_export,
    run_request,
)
from server.privacy.subjects import Subject, subject_ref


@dataclass(frozen=True)
class Requester:
    """Who asks: the tenant and the actor (``apikey:<key id>``) of the call."""

    tenant_id: uuid.UUID
    actor: str


class PrivacyRights:
    """The data-subject rights of one hub process.

    Args:
        db: the database.
        subject_secret: key of the subjects' pseudonyms (:func:`subject_secret`).
        retention_years: how long invoice records are kept after receipt.
        anonymise_after: how long after closing an account is anonymised.
        clock: the current time.
    """

    def __init__(
        self,
        db: Database,
        *,
        subject_secret: bytes,
        retention_years: int,
        anonymise_after: dt.timedelta,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._db = db
        self._secret = subject_secret
        self._retention_years = retention_years
        self._anonymise_after = anonymise_after
        self._clock = clock

    def _context(
        self, who: Requester, kind: str, subject: Subject, request_id: str
    ) -> RequestContext:
        return RequestContext(
            tenant_id=who.tenant_id,
            actor=who.actor,
            request_id=request_id or f"generated-{uuid.uuid4()}",
            kind=kind,
            subject_ref=subject_ref(self._secret, who.tenant_id, subject),
        )

    async def export(self, who: Requester, subject: Subject, request_id: str) -> list[ExportRecord]:
        """Every record held about the subject (read, recorded and audited in one go)."""
        ctx = self._context(who, "EXPORT", subject, request_id)

        async def work(session: AsyncSession) -> tuple[list[ExportRecord], Done]:
            records = await export.export_records(session, ctx.tenant_id, subject, ctx.subject_ref)
            return records, Done({"records": str(len(records) - 1)})

        return await run_export(self._db, ctx, work, self._clock())

    async def correct(
        self,
        who: Requester,
        subject: Subject,
        corrections: Mapping[str, str],
        *,
        note: str,
        request_id: str,
    ) -> CorrectionResult:
        """Correct an account, or annotate a buyer's invoices."""
        ctx = self._context(who, "CORRECT", subject, request_id)
        now = self._clock()

        async def work(session: AsyncSession) -> tuple[CorrectionResult, Done]:
            result = await correction.correct(
                session,
                ctx.tenant_id,
                subject,
                ctx.subject_ref,
                corrections,
                note=note,
                request_id=ctx.request_id,
                now=now,
            )
            facts = {
                "fields": ",".join(sorted(corrections)),
                "annotated_invoices": str(len(result.annotations)),
            }
            return result, Done(facts)

        return await run_request(self._db, ctx, work, CorrectionResult, now)

    async def erase(
        self, who: Requester, subject: Subject, *, force: bool, request_id: str
    ) -> ErasureReport:
        """Erase what may be erased about the subject (``force``), or preview it."""
        ctx = self._context(who, "ERASE" if force else "ERASE_DRY_RUN", subject, request_id)
        now = self._clock()

        async def work(session: AsyncSession) -> tuple[ErasureReport, Done]:
            report = await erasure.erase(
                session,
                ctx.tenant_id,
                subject,
                ctx.subject_ref,
                force=force,
                retention_years=self._retention_years,
                request_id=ctx.request_id,
                now=now,
            )
            return report, Done(report.counts())

        return await run_request(self._db, ctx, work, ErasureReport, now)

    async def record_consent(
        self,
        who: Requester,
        account_id: uuid.UUID,
        *,
        purpose: str,
        granted: bool,
        source: str,
        request_id: str,
    ) -> ConsentRecord:
        """Record that an account gave (``granted``) or withdrew consent for a purpose."""
        kind = "RECORD_CONSENT" if granted else "WITHDRAW_CONSENT"
        ctx = self._context(who, kind, Subject(account_id=account_id), request_id)
        now = self._clock()

        async def work(session: AsyncSession) -> tuple[ConsentRecord, Done]:
            record = await consent.record_consent(
                session,
                ctx.tenant_id,
                account_id,
                purpose=purpose,
                granted=granted,
                source=source,
                request_id=ctx.request_id,
                now=now,
            )
            return record, Done({"purpose": record.purpose})

        return await run_request(self._db, ctx, work, ConsentRecord, now)

    async def consents(self, who: Requester, account_id: uuid.UUID) -> ConsentHistory:
        """An account's consent decisions (the read is audited)."""
        ctx = self._context(who, "LIST_CONSENTS", Subject(account_id=account_id), "")
        async with self._db.read("privacy.consents") as session:
            history = await consent.consent_history(session, ctx.tenant_id, account_id)
        await audit_read(self._db, ctx, self._clock())
        return history

    async def close_account(
        self, who: Requester, account_id: uuid.UUID, *, request_id: str
    ) -> Closure:
        """Close an account; the sweeper anonymises it within the configured days."""
        ctx = self._context(who, "CLOSE_ACCOUNT", Subject(account_id=account_id), request_id)
        now = self._clock()

        async def work(session: AsyncSession) -> tuple[Closure, Done]:
            closure = await consent.close_account(
                session, ctx.tenant_id, account_id, anonymise_after=self._anonymise_after, now=now
            )
            return closure, Done({"anonymise_after_days": str(self._anonymise_after.days)})

        return await run_request(self._db, ctx, work, Closure, now)

    async def requests(
        self, who: Requester, *, before: RequestPosition | None, limit: int
    ) -> Sequence[PrivacyRequest]:
        """The tenant's privacy requests, newest first (the read is audited)."""
        rows = await list_requests(self._db, who.tenant_id, before=before, limit=limit)
        ctx = RequestContext(who.tenant_id, who.actor, "", "LIST_REQUESTS", "-")
        await audit_read(self._db, ctx, self._clock())
        return rows
