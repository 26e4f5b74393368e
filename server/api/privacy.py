"""PrivacyService: data-subject rights, protobuf in and out of :mod:`server.privacy.rights`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson

from fbrhub.v1 import privacy_service_pb2, privacy_service_pb2_grpc
from server.api.admin import PURPOSE_NAMES, PURPOSE_VALUES
from server.api.convert.common import timestamp
from server.api.interceptor import current_caller
from server.api.limits import check_lengths, page_size
from server.api.tokens import PageTokens, TokenCodec, aware_time, short_text
from server.clock import Clock, utcnow
from server.db.engine import Database
from server.db.models import PrivacyRequest
from server.errors import InvalidField, NotFound
from server.privacy.consent import ConsentRecord
from server.privacy.erasure import ErasureReport
from server.privacy.requests import RequestPosition
from server.privacy.rights import PrivacyRights, Requester
from server.privacy.subjects import Subject, subject_secret
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
        return Subject(account_id=_account_id(message.account_id))
    if kind == "buyer_ntn_cnic":
        ntn = message.buyer_ntn_cnic
        if not (ntn.isdigit() and len(ntn) in (7, 13)):
            raise InvalidField(
                f"{path}.buyer_ntn_cnic", "buyer_ntn_cnic must be 7 (NTN) or 13 (CNIC) digits"
            )
        return Subject(buyer_ntn_cnic=ntn)
    raise InvalidField(path, "set subject.account_id or subject.buyer_ntn_cnic")


def _account_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound("account") from None


def _require_request_id(request_id: str) -> None:
    if not request_id:
        raise InvalidField("request_id", "request_id is required (a UUID)")
    if len(request_id) > 64:
        raise InvalidField("request_id", "request_id must be at most 64 characters")


def _requester() -> Requester:
    caller = current_caller()
    return Requester(caller.tenant_id, f"apikey:{caller.key_id}")


def consent_to_proto(record: ConsentRecord) -> privacy_service_pb2.ConsentEvent:
    """A consent decision as protobuf."""
    return privacy_service_pb2.ConsentEvent(
        purpose=PURPOSE_VALUES[record.purpose],
        granted=record.granted,
        source=record.source,
        record_time=timestamp(record.recorded_at),
        request_id=record.request_id,
    )


def erasure_to_proto(report: ErasureReport) -> privacy_service_pb2.ErasePersonalDataResponse:
    """An erasure report (applied or previewed) as protobuf."""
    return privacy_service_pb2.ErasePersonalDataResponse(
        dry_run=report.dry_run,
        items=[
            privacy_service_pb2.ErasureItem(
                resource=v.resource,
                action=ERASURE_ACTIONS[v.action],
                fields=list(v.fields),
                retained_until=timestamp(v.retained_until),
                retention_reason=v.retention_reason,
            )
            for v in report.verdicts
        ],
    )


def request_to_proto(row: PrivacyRequest) -> privacy_service_pb2.PrivacyRequest:
    """A privacy request's record as protobuf."""
    return privacy_service_pb2.PrivacyRequest(
        request_id=row.request_id,
        kind=KIND_VALUES.get(row.kind, 0),  # type: ignore[arg-type]
        status=row.status,
        subject_ref=row.subject_ref,
        outcome={str(k): str(v) for k, v in row.outcome.items()},
        create_time=timestamp(row.created_at),
        actor=row.actor,
    )


class PrivacyService(privacy_service_pb2_grpc.PrivacyServiceServicer):
    """The data-subject rights API (role ``privacy_officer``)."""

    def __init__(
        self,
        db: Database,
        tokens: TokenCodec,
        settings: Settings,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._rights = PrivacyRights(
            db,
            subject_secret=subject_secret(settings.cursor_secret.get_secret_value().encode()),
            retention_years=settings.retention_years,
            anonymise_after=dt.timedelta(days=settings.account_anonymise_days),
            clock=clock,
        )
        self._pages = PageTokens(
            tokens,
            "privacy-requests",
            lambda p: {"t": p.created_at.isoformat(), "r": p.request_id},
            lambda d: RequestPosition(aware_time(d["t"]), short_text(d["r"])),
        )

    async def ExportPersonalData(
        self,
        request: privacy_service_pb2.ExportPersonalDataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[privacy_service_pb2.ExportPersonalDataResponse]:
        check_lengths(request, request_id=64)
        subject = _subject(request.subject)
        records = await self._rights.export(_requester(), subject, request.request_id)
        for index, record in enumerate(records):
            yield privacy_service_pb2.ExportPersonalDataResponse(
                index=index, record_type=record.record_type, json=orjson.dumps(record.data)
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
            raise InvalidField("corrections", "at least one correction is required")
        corrections: dict[str, str] = {}
        for index, item in enumerate(request.corrections):
            if len(item.value) > 300 or not item.value.strip():
                raise InvalidField(
                    f"corrections[{index}].value", "value must be 1 to 300 characters"
                )
            corrections[item.field] = item.value
        result = await self._rights.correct(
            _requester(),
            subject,
            corrections,
            note=request.reason,
            request_id=request.request_id,
        )
        return privacy_service_pb2.CorrectPersonalDataResponse(
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

    async def ErasePersonalData(
        self,
        request: privacy_service_pb2.ErasePersonalDataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.ErasePersonalDataResponse:
        _require_request_id(request.request_id)
        check_lengths(request, reason=500)
        subject = _subject(request.subject)
        report = await self._rights.erase(
            _requester(), subject, force=request.force, request_id=request.request_id
        )
        return erasure_to_proto(report)

    async def _consent(self, request: Any, *, granted: bool) -> privacy_service_pb2.ConsentEvent:
        _require_request_id(request.request_id)
        check_lengths(request, source=64)
        if request.purpose not in PURPOSE_NAMES:
            raise InvalidField("purpose", "purpose is required")
        if not request.source:
            raise InvalidField("source", "source is required")
        record = await self._rights.record_consent(
            _requester(),
            _account_id(request.account_id),
            purpose=PURPOSE_NAMES[request.purpose],
            granted=granted,
            source=request.source,
            request_id=request.request_id,
        )
        return consent_to_proto(record)

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
        history = await self._rights.consents(_requester(), _account_id(request.account_id))
        return privacy_service_pb2.ListConsentsResponse(
            current=[consent_to_proto(e) for e in history.current],
            history=[consent_to_proto(e) for e in history.history],
        )

    async def CloseAccount(
        self,
        request: privacy_service_pb2.CloseAccountRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.CloseAccountResponse:
        _require_request_id(request.request_id)
        check_lengths(request, reason=500)
        closure = await self._rights.close_account(
            _requester(), _account_id(request.account_id), request_id=request.request_id
        )
        return privacy_service_pb2.CloseAccountResponse(
            close_time=timestamp(closure.closed_at),
            anonymise_by_time=timestamp(closure.anonymise_by),
        )

    async def ListPrivacyRequests(
        self,
        request: privacy_service_pb2.ListPrivacyRequestsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> privacy_service_pb2.ListPrivacyRequestsResponse:
        who = _requester()
        size = page_size(request.page_size, default=50, maximum=500)
        before = self._pages.position(who.tenant_id, request)
        rows = list(await self._rights.requests(who, before=before, limit=size + 1))
        rows, next_token = self._pages.page(
            who.tenant_id,
            request,
            rows,
            size,
            lambda row: RequestPosition(row.created_at, row.request_id),
        )
        return privacy_service_pb2.ListPrivacyRequestsResponse(
            requests=[request_to_proto(r) for r in rows], next_page_token=next_token
        )
