"""AuditService: list, stream and verify the caller's tenant's audit trail."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from fbrhub.v1 import audit_service_pb2, audit_service_pb2_grpc
from server.api.convert.common import time_from_proto, timestamp
from server.api.follow import FollowOptions, Step, follow_events
from server.api.interceptor import current_caller
from server.api.limits import check_lengths, check_list, page_size
from server.api.tokens import Cursors, PageTokens, TokenCodec, sequence
from server.audit.queries import AuditFilters, read_audit_events
from server.audit.trail import audit_topic
from server.audit.verify import ChainProblem, verify_chain
from server.db.engine import Database, mark_work
from server.db.models import AuditEvent
from server.db.notify import Notifier
from server.errors import FieldTooLong
from server.settings import Settings

STREAM_PAGE = 500
# Audit actions, resources and outcomes are short identifiers (``invoice.queued``).
MAX_FILTER_TEXT = 200
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


def filters_from_request(request: audit_service_pb2.ListAuditEventsRequest) -> AuditFilters:
    """The filters of a ListAuditEvents request.

    Raises:
        InvalidField: too many or too long values, a time out of range.
    """
    check_list(request.actions, "actions")
    for index, action in enumerate(request.actions):
        if len(action) > MAX_FILTER_TEXT:
            raise FieldTooLong(
                f"actions[{index}]", f"actions must be at most {MAX_FILTER_TEXT} characters"
            )
    check_lengths(request, resource_prefix=MAX_FILTER_TEXT, outcome=MAX_FILTER_TEXT)
    return AuditFilters(
        actions=tuple(dict.fromkeys(request.actions)),
        resource_prefix=request.resource_prefix,
        outcome=request.outcome,
        start_time=time_from_proto(request.start_time, "start_time")
        if request.HasField("start_time")
        else None,
        end_time=time_from_proto(request.end_time, "end_time")
        if request.HasField("end_time")
        else None,
    )


class AuditService(audit_service_pb2_grpc.AuditServiceServicer):
    """The audit trail API."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        tokens: TokenCodec,
        settings: Settings,
        *,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._db = db
        self._stopping = stopping
        self._notifier = notifier
        self._settings = settings
        self._cursors = Cursors(tokens, "audit")
        self._pages = PageTokens(
            tokens, "audit-page", lambda s: {"s": s}, lambda d: sequence(d["s"])
        )

    async def ListAuditEvents(
        self,
        request: audit_service_pb2.ListAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> audit_service_pb2.ListAuditEventsResponse:
        tenant_id = current_caller().tenant_id
        size = page_size(request.page_size, default=100, maximum=1000)
        filters = filters_from_request(request)
        after = self._pages.position(tenant_id, request) or 0
        async with self._db.read("audit.list") as session:
            rows = await read_audit_events(session, tenant_id, after, size + 1, filters)
        rows, next_token = self._pages.page(tenant_id, request, rows, size, lambda r: r.seq)
        return audit_service_pb2.ListAuditEventsResponse(
            events=[event_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def StreamAuditEvents(
        self,
        request: audit_service_pb2.StreamAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[audit_service_pb2.StreamAuditEventsResponse]:
        tenant_id = current_caller().tenant_id
        after = self._cursors.decode(tenant_id, request.cursor)
        topic = audit_topic(tenant_id)

        async def read_page(after: int, limit: int) -> list[AuditEvent]:
            # Quiet: a follower re-reads every poll interval; only pages with events count.
            async with self._db.read("audit.page", quiet=True) as session:
                page = await read_audit_events(session, tenant_id, after, limit)
                if page:
                    mark_work(session, {"fbrhub.events": len(page)})
                return page

        async def wait_for_news(timeout: float) -> bool:
            return await self._notifier.wait(topic, timeout)

        options = FollowOptions(
            follow=request.follow,
            poll_seconds=self._settings.audit_poll_seconds,
            heartbeat_seconds=self._settings.audit_heartbeat_seconds,
            stop=self._stopping,
        )
        steps = follow_events(
            read_page, wait_for_news, after=after, page_size=STREAM_PAGE, options=options
        )
        async for step in steps:
            yield self._stream_message(tenant_id, step)

    def _stream_message(
        self, tenant_id: uuid.UUID, step: Step[AuditEvent]
    ) -> audit_service_pb2.StreamAuditEventsResponse:
        message = audit_service_pb2.StreamAuditEventsResponse(
            cursor=self._cursors.encode(tenant_id, step.after)
        )
        if step.event is None:
            message.heartbeat_time.GetCurrentTime()
        else:
            message.event.CopyFrom(event_to_proto(step.event))
        return message

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
