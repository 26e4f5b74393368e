"""AuditService: list, stream and verify the caller's tenant's audit trail."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from fbrhub.v1 import audit_service_pb2, audit_service_pb2_grpc
from server.api.admin import timestamp
from server.api.errors import invalid_argument
from server.api.interceptor import current_caller
from server.api.limits import page_size
from server.api.tokens import TokenCodec, TokenError
from server.audit.trail import (
    ChainProblem,
    audit_topic,
    read_audit_events,
    verify_chain,
)
from server.db.engine import Database
from server.db.notify import Notifier
from server.db.privacy_models import AuditEvent
from server.settings import Settings

STREAM_PAGE = 500
PROBLEMS = {
    ChainProblem.EVENT_EDITED: audit_service_pb2.CHAIN_PROBLEM_EVENT_EDITED,
    ChainProblem.EVENT_MISSING: audit_service_pb2.CHAIN_PROBLEM_EVENT_MISSING,
    ChainProblem.EVENT_OUT_OF_ORDER: audit_service_pb2.CHAIN_PROBLEM_EVENT_OUT_OF_ORDER,
}


def event_to_proto(row: AuditEvent) -> audit_service_pb2.AuditEvent:
    """An audit event row as protobuf."""
    return audit_service_pb2.AuditEvent(
        sequence=row.seq,
        event_time=timestamp(row.event_time),
        actor=row.actor,
        action=row.action,
        resource=row.resource,
        outcome=row.outcome,
        request_id=row.request_id,
        trace_id=row.trace_id,
        details=row.details,
        hash=row.hash,
    )


class AuditService(audit_service_pb2_grpc.AuditServiceServicer):
    """The audit trail API."""

    def __init__(
        self, db: Database, notifier: Notifier, tokens: TokenCodec, settings: Settings
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._tokens = tokens
        self._settings = settings

    async def ListAuditEvents(
        self,
        request: audit_service_pb2.ListAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> audit_service_pb2.ListAuditEventsResponse:
        tenant_id = current_caller().tenant_id
        size = page_size(request.page_size, default=100, maximum=1000)
        filters: list[Any] = []
        if request.actions:
            filters.append(AuditEvent.action.in_(list(request.actions)))
        if request.resource_prefix:
            filters.append(AuditEvent.resource.startswith(request.resource_prefix, autoescape=True))
        if request.outcome:
            filters.append(AuditEvent.outcome == request.outcome)
        if request.HasField("start_time"):
            filters.append(AuditEvent.event_time >= request.start_time.ToDatetime(dt.UTC))
        if request.HasField("end_time"):
            filters.append(AuditEvent.event_time < request.end_time.ToDatetime(dt.UTC))
        only_filters = audit_service_pb2.ListAuditEventsRequest()
        only_filters.CopyFrom(request)
        only_filters.ClearField("page_size")
        only_filters.ClearField("page_token")
        fingerprint = hashlib.sha256(
            only_filters.SerializeToString(deterministic=True)
        ).hexdigest()[:16]
        after = 0
        if request.page_token:
            try:
                token = self._tokens.decode("audit-page", tenant_id, request.page_token)
                if token.get("f") != fingerprint:
                    raise TokenError("filters changed")
                after = int(token["s"])
            except (TokenError, KeyError, ValueError, TypeError):
                raise invalid_argument(
                    "page_token",
                    "page_token is invalid or was made for other filters",
                    "PAGE_TOKEN_INVALID",
                ) from None
        async with self._db.read("audit.list") as session:
            rows = await read_audit_events(session, tenant_id, after, size + 1, filters)
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            next_token = self._tokens.encode(
                "audit-page", tenant_id, {"f": fingerprint, "s": rows[-1].seq}
            )
        return audit_service_pb2.ListAuditEventsResponse(
            events=[event_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def StreamAuditEvents(
        self,
        request: audit_service_pb2.StreamAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[audit_service_pb2.StreamAuditEventsResponse]:
        tenant_id = current_caller().tenant_id
        after = 0
        if request.cursor:
            try:
                after = int(self._tokens.decode("audit", tenant_id, request.cursor)["s"])
            except (TokenError, KeyError, ValueError, TypeError):
                raise invalid_argument(
                    "cursor", "cursor is invalid or belongs to another tenant", "CURSOR_INVALID"
                ) from None
        topic = audit_topic(tenant_id)
        idle = 0.0
        while True:
            async with self._db.read("audit.page") as session:
                rows = await read_audit_events(session, tenant_id, after, STREAM_PAGE)
            for row in rows:
                after = row.seq
                yield audit_service_pb2.StreamAuditEventsResponse(
                    event=event_to_proto(row),
                    cursor=self._tokens.encode("audit", tenant_id, {"s": after}),
                )
            if len(rows) == STREAM_PAGE:
                continue
            if not request.follow:
                return
            if rows:
                idle = 0.0
            # Events written by another process carry no in-process signal; the poll
            # interval bounds how late they are seen.
            woke = await self._notifier.wait(topic, self._settings.audit_poll_seconds)
            idle = 0.0 if woke else idle + self._settings.audit_poll_seconds
            if idle >= self._settings.audit_heartbeat_seconds:
                idle = 0.0
                heartbeat = audit_service_pb2.StreamAuditEventsResponse(
                    cursor=self._tokens.encode("audit", tenant_id, {"s": after})
                )
                heartbeat.heartbeat_time.GetCurrentTime()
                yield heartbeat

    async def VerifyAuditChain(
        self,
        request: audit_service_pb2.VerifyAuditChainRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> audit_service_pb2.VerifyAuditChainResponse:
        verdict = await verify_chain(self._db, current_caller().tenant_id)
        return audit_service_pb2.VerifyAuditChainResponse(
            intact=verdict.intact,
            checked_count=verdict.checked_count,
            first_bad_sequence=verdict.first_bad_seq,
            problem=(
                PROBLEMS[verdict.problem]
                if verdict.problem
                else audit_service_pb2.CHAIN_PROBLEM_UNSPECIFIED
            ),
            message=verdict.message or "the audit chain is intact",
            head_hash=verdict.head_hash,
        )
