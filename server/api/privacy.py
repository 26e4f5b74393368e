"""PrivacyService: data-subject rights, translated between protobuf and server.privacy.rights."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import orjson

from fbrhub.v1 import privacy_service_pb2, privacy_service_pb2_grpc
from server.api.admin import PURPOSE_NAMES, PURPOSE_VALUES, timestamp
from server.api.errors import invalid_argument, not_found
from server.api.interceptor import current_caller
from server.api.limits import check_lengths, page_size
from server.api.tokens import TokenCodec, TokenError
from server.db.engine import Database
from server.db.notify import Notifier
from server.db.privacy_models import ConsentEvent
from server.privacy import rights as privacy
from server.privacy.rights import Outcome, RequestContext, Subject
from server.settings import Settings

KIND_VALUES = {
    "EXPORT": privacy_service_pb2.PRIVACY_REQUEST_KIND_EXPORT,
    "CORRECT": privacy_service_pb2.PRIVACY_REQUEST_KIND_CORRECT,
    "ERASE": privacy_service_pb2.PRIVACY_REQUEST_KIND_ERASE,
    "ERASE_DRY_RUN": privacy_service_pb2.PRIVACY_REQUEST_KIND_ERASE_DRY_RUN,
    "RECORD_CONSENT": privacy_service_pb2.PRIVACY_REQUEST_KIND_RECORD_CONSENT,
    "WITHDRAW_CONSENT": privacy_service_pb2.PRIVACY_REQUEST_KIND_WITHDRAW_CONSENT,
    "CLOSE_ACCOUNT": privacy_service_pb2.PRIVACY_REQUEST_KIND_CLOSE_ACCOUNT,
}
ERASURE_ACTIONS = {
    "DELETED": privacy_service_pb2.ERASURE_ACTION_DELETED,
    "PSEUDONYMISED": privacy_service_pb2.ERASURE_ACTION_PSEUDONYMISED,
    "RETAINED": privacy_service_pb2.ERASURE_ACTION_RETAINED,
}


def _subject(message: privacy_service_pb2.DataSubject, path: str = "subject") -> Subject:
    kind = message.WhichOneof("subject")
    if kind == "account_id":
        try:
            return Subject(account_id=uuid.UUID(message.account_id))
        except ValueError:
            raise not_found("account") from None
    if kind == "buyer_ntn_cnic":
        ntn = message.buyer_ntn_cnic
        if not (ntn.isdigit() and len(ntn) in (7, 13)):
            raise invalid_argument(
                f"{path}.buyer_ntn_cnic", "buyer_ntn_cnic must be 7 (NTN) or 13 (CNIC) digits"
            )
        return Subject(buyer_ntn_cnic=ntn)
    raise invalid_argument(path, "set subject.account_id or subject.buyer_ntn_cnic")


def _account_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise not_found("account") from None


def _require_request_id(request_id: str) -> None:
    if not request_id:
        raise invalid_argument("request_id", "request_id is required (a UUID)")
    if len(request_id) > 64:
        raise invalid_argument("request_id", "request_id must be at most 64 characters")


def _consent_to_proto(event: ConsentEvent) -> privacy_service_pb2.ConsentEvent:
    return privacy_service_pb2.ConsentEvent(
        purpose=PURPOSE_VALUES[event.purpose],
        granted=event.granted,
        source=event.source,
        record_time=timestamp(event.recorded_at),
        request_id=event.request_id,
    )


class PrivacyService(privacy_service_pb2_grpc.PrivacyServiceServicer):
    """The data-subject rights API (role ``privacy_officer``)."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        tokens: TokenCodec,
        settings: Settings,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._tokens = tokens
        self._settings = settings
        self._clock = clock
        self._subject_secret = hmac.new(
            settings.cursor_secret.get_secret_value().encode(), b"subject-ref", hashlib.sha256
        ).digest()

    def _context(self, kind: str, subject: Subject, request_id: str) -> RequestContext:
        caller = current_caller()
        return RequestContext(
            tenant_id=caller.tenant_id,
            actor=f"apikey:{caller.key_id}",
            request_id=request_id or f"generated-{uuid.uuid4()}",
            kind=kind,
            subject_ref=privacy.subject_ref(self._subject_secret, caller.tenant_id, subject),
        )

    async def ExportPersonalData(
        self,
        request: privacy_service_pb2.ExportPersonalDataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[privacy_service_pb2.ExportPersonalDataResponse]:
        check_lengths(request, request_id=64)
        subject = _subject(request.subject)
        ctx = self._context("EXPORT", subject, request.request_id)
        records: list[tuple[str, dict[str, Any]]] = []

        async def work(session: Any) -> Outcome:
            records.clear()
            async for record in privacy.export_records(
                session, ctx.tenant_id, subject, ctx.subject_ref
            ):
                records.append(record)
            facts = {"records": str(len(records) - 1)}
            return Outcome(b"", facts)

        # The export is read, recorded and audited in one transaction; a repeated request id
        # exports the data as it is now (an export changes nothing).
        await privacy.run_request(self._db, ctx, work, self._clock(), replay=False)
        for index, (record_type, record) in enumerate(records):
            yield privacy_service_pb2.ExportPersonalDataResponse(
                index=index, record_type=record_type, json=orjson.dumps(record)
            )

    async def CorrectPersonalData(
        self,
        request: privacy_service_pb2.CorrectPersonalDataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.CorrectPersonalDataResponse:
        _require_request_id(request.request_id)
        check_lengths(request, reason=500)
        subject = _subject(request.subject)
        if not request.corrections:
            raise invalid_argument("corrections", "at least one correction is required")
        corrections: dict[str, str] = {}
        for index, item in enumerate(request.corrections):
            if len(item.value) > 300 or not item.value.strip():
                raise invalid_argument(
                    f"corrections[{index}].value", "value must be 1 to 300 characters"
                )
            corrections[item.field] = item.value
        ctx = self._context("CORRECT", subject, request.request_id)
        now = self._clock()

        async def work(session: Any) -> Outcome:
            result = await privacy.correct(
                session,
                ctx.tenant_id,
                subject,
                ctx.subject_ref,
                corrections,
                note=request.reason,
                request_id=ctx.request_id,
                now=now,
            )
            response = privacy_service_pb2.CorrectPersonalDataResponse(
                corrected_fields=result.corrected_fields,
                annotations=[
                    privacy_service_pb2.InvoiceAnnotation(
                        invoice_id=str(a.invoice_id),
                        invoice_state=a.state,
                        fbr_accepted=a.fbr_accepted,
                    )
                    for a in result.annotations
                ],
                legal_route=result.legal_route,
            )
            facts = {
                "fields": ",".join(sorted(corrections)),
                "annotated_invoices": str(len(result.annotations)),
            }
            return Outcome(response.SerializeToString(), facts)

        raw = await privacy.run_request(self._db, ctx, work, now)
        return privacy_service_pb2.CorrectPersonalDataResponse.FromString(raw)

    async def ErasePersonalData(
        self,
        request: privacy_service_pb2.ErasePersonalDataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.ErasePersonalDataResponse:
        _require_request_id(request.request_id)
        check_lengths(request, reason=500)
        subject = _subject(request.subject)
        ctx = self._context(
            "ERASE" if request.force else "ERASE_DRY_RUN", subject, request.request_id
        )
        now = self._clock()

        async def work(session: Any) -> Outcome:
            verdicts = await privacy.erase(
                session,
                ctx.tenant_id,
                subject,
                ctx.subject_ref,
                force=request.force,
                retention_years=self._settings.retention_years,
                request_id=ctx.request_id,
                now=now,
            )
            response = privacy_service_pb2.ErasePersonalDataResponse(
                dry_run=not request.force,
                items=[
                    privacy_service_pb2.ErasureItem(
                        resource=v.resource,
                        action=ERASURE_ACTIONS[v.action],
                        fields=list(v.fields),
                        retained_until=timestamp(v.retained_until),
                        retention_reason=v.retention_reason,
                    )
                    for v in verdicts
                ],
            )
            facts: dict[str, str] = {}
            for verdict in verdicts:
                key = verdict.action.lower()
                facts[key] = str(int(facts.get(key, "0")) + 1)
            return Outcome(response.SerializeToString(), facts)

        raw = await privacy.run_request(self._db, ctx, work, now)
        return privacy_service_pb2.ErasePersonalDataResponse.FromString(raw)

    async def _consent(self, request: Any, *, granted: bool) -> privacy_service_pb2.ConsentEvent:
        _require_request_id(request.request_id)
        check_lengths(request, source=64)
        if request.purpose not in PURPOSE_NAMES:
            raise invalid_argument("purpose", "purpose is required")
        if not request.source:
            raise invalid_argument("source", "source is required")
        account_id = _account_id(request.account_id)
        kind = "RECORD_CONSENT" if granted else "WITHDRAW_CONSENT"
        ctx = self._context(kind, Subject(account_id=account_id), request.request_id)
        now = self._clock()

        async def work(session: Any) -> Outcome:
            event = await privacy.record_consent(
                session,
                ctx.tenant_id,
                account_id,
                purpose=PURPOSE_NAMES[request.purpose],
                granted=granted,
                source=request.source,
                request_id=ctx.request_id,
                now=now,
            )
            proto = _consent_to_proto(event)
            return Outcome(proto.SerializeToString(), {"purpose": event.purpose})

        raw = await privacy.run_request(self._db, ctx, work, now)
        return privacy_service_pb2.ConsentEvent.FromString(raw)

    async def RecordConsent(
        self,
        request: privacy_service_pb2.RecordConsentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.RecordConsentResponse:
        return privacy_service_pb2.RecordConsentResponse(
            consent=await self._consent(request, granted=True)
        )

    async def WithdrawConsent(
        self,
        request: privacy_service_pb2.WithdrawConsentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.WithdrawConsentResponse:
        return privacy_service_pb2.WithdrawConsentResponse(
            consent=await self._consent(request, granted=False)
        )

    async def ListConsents(
        self,
        request: privacy_service_pb2.ListConsentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.ListConsentsResponse:
        account_id = _account_id(request.account_id)
        ctx = self._context("LIST_CONSENTS", Subject(account_id=account_id), "")
        async with self._db.read("privacy.consents") as session:
            current, history = await privacy.consent_history(session, ctx.tenant_id, account_id)
        await privacy.audit_read(self._db, ctx, self._clock())
        return privacy_service_pb2.ListConsentsResponse(
            current=[_consent_to_proto(e) for e in current],
            history=[_consent_to_proto(e) for e in history],
        )

    async def CloseAccount(
        self,
        request: privacy_service_pb2.CloseAccountRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.CloseAccountResponse:
        _require_request_id(request.request_id)
        check_lengths(request, reason=500)
        account_id = _account_id(request.account_id)
        ctx = self._context("CLOSE_ACCOUNT", Subject(account_id=account_id), request.request_id)
        now = self._clock()
        delay = dt.timedelta(days=self._settings.account_anonymise_days)

        async def work(session: Any) -> Outcome:
            account = await privacy.close_account(
                session, ctx.tenant_id, account_id, anonymise_after=delay, now=now
            )
            response = privacy_service_pb2.CloseAccountResponse(
                close_time=timestamp(account.closed_at),
                anonymise_by_time=timestamp(account.anonymise_due_at),
            )
            return Outcome(response.SerializeToString(), {"anonymise_after_days": str(delay.days)})

        raw = await privacy.run_request(self._db, ctx, work, now)
        return privacy_service_pb2.CloseAccountResponse.FromString(raw)

    async def ListPrivacyRequests(
        self,
        request: privacy_service_pb2.ListPrivacyRequestsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.ListPrivacyRequestsResponse:
        caller = current_caller()
        size = page_size(request.page_size, default=50, maximum=500)
        before = None
        if request.page_token:
            try:
                token = self._tokens.decode(
                    "privacy-requests", caller.tenant_id, request.page_token
                )
                before = (dt.datetime.fromisoformat(token["t"]), str(token["r"]))
            except (TokenError, KeyError, ValueError):
                raise invalid_argument(
                    "page_token", "page_token is invalid", "PAGE_TOKEN_INVALID"
                ) from None
        async with self._db.read("privacy.requests") as session:
            rows = list(
                await privacy.list_requests(
                    session, caller.tenant_id, before=before, limit=size + 1
                )
            )
        await privacy.audit_read(
            self._db,
            RequestContext(caller.tenant_id, f"apikey:{caller.key_id}", "", "LIST_REQUESTS", "-"),
            self._clock(),
        )
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            next_token = self._tokens.encode(
                "privacy-requests",
                caller.tenant_id,
                {"t": rows[-1].created_at.isoformat(), "r": rows[-1].request_id},
            )
        return privacy_service_pb2.ListPrivacyRequestsResponse(
            requests=[
                privacy_service_pb2.PrivacyRequest(
                    request_id=r.request_id,
                    kind=KIND_VALUES.get(r.kind, 0),  # type: ignore[arg-type]
                    status=r.status,
                    subject_ref=r.subject_ref,
                    outcome={str(k): str(v) for k, v in r.outcome.items()},
                    create_time=timestamp(r.created_at),
                    actor=r.actor,
                )
                for r in rows
            ],
            next_page_token=next_token,
        )
