"""Privacy requests: run once per request id, recorded for the compliance report, audited.

Every mutating privacy call carries a request id. Repeating it returns the stored answer
(audited as a replay); reusing it for another kind of request or another subject is
``REQUEST_ID_REUSED``; a call that failed is recorded as ``FAILED`` and may be retried with
the same id. The stored answer is the domain result as JSON, so a replay does not depend on
any wire format. An export is never stored (it is personal data) and runs again on a
repeated id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.trail import NewAuditEvent, append_audit_events
from server.db.engine import Database
from server.db.models import PrivacyRequest
from server.errors import HubError, RequestIdReused


class Replayable(Protocol):
    """A request's result that can be stored and given back for a repeated request id."""

    def to_record(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        ...

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """The result read back from :meth:`to_record`'s data."""
        ...


R = TypeVar("R")
P = TypeVar("P", bound=Replayable)


@dataclass(frozen=True)
class RequestContext:
    """Who asks, for whom, under which request id."""

    tenant_id: uuid.UUID
    actor: str
    request_id: str
    kind: str
    subject_ref: str


@dataclass
class Done:
    """What a request did, besides its result: facts for the report, extra audit events."""

    facts: dict[str, str] = field(default_factory=dict)
    extra_events: list[NewAuditEvent] = field(default_factory=list)


Work = Callable[[AsyncSession], Awaitable[tuple[R, Done]]]


def _audit(ctx: RequestContext, outcome: str, details: Mapping[str, str]) -> NewAuditEvent:
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
    db: Database, ctx: RequestContext, work: Work[P], result_type: type[P], now: dt.datetime
) -> P:
    """Run a privacy request once per request id, recording and auditing it.

    Args:
        work: does the request inside the transaction; returns its result and facts.
        result_type: the result's class, to give a stored result back for a repeated id.

    Raises:
        RequestIdReused: the id was used for another kind of request or another subject.
        HubError: whatever ``work`` raised (the failure is recorded and audited).
    """

    def load(raw: bytes | None) -> P | None:
        try:
            return result_type.from_record(orjson.loads(raw or b"null"))
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError, ValueError):
            return None  # an answer stored before results were kept as JSON: run again

    return await _run(db, ctx, work, now, dump=lambda r: orjson.dumps(r.to_record()), load=load)


async def run_export(db: Database, ctx: RequestContext, work: Work[R], now: dt.datetime) -> R:
    """Like :func:`run_request` for an export: nothing stored, a repeated id runs again."""
    return await _run(db, ctx, work, now, dump=lambda _result: None, load=None)


async def _run(
    db: Database,
    ctx: RequestContext,
    work: Work[R],
    now: dt.datetime,
    *,
    dump: Callable[[R], bytes | None],
    load: Callable[[bytes | None], R | None] | None,
) -> R:
    for attempt in range(2):
        try:
            return await _run_once(db, ctx, work, now, dump, load)
        except IntegrityError:  # a concurrent call with the same id committed first
            if attempt:
                raise
    raise AssertionError("unreachable")


async def _run_once(
    db: Database,
    ctx: RequestContext,
    work: Work[R],
    now: dt.datetime,
    dump: Callable[[R], bytes | None],
    load: Callable[[bytes | None], R | None] | None,
) -> R:
    try:
        async with db.write(f"privacy.{ctx.kind.lower()}") as session:
            stored = await session.get(PrivacyRequest, (ctx.tenant_id, ctx.request_id))
            if stored is not None and (
                stored.kind != ctx.kind or stored.subject_ref != ctx.subject_ref
            ):
                raise RequestIdReused(
                    "request_id", "request_id was already used for another request"
                )
            if load is not None and stored is not None and stored.status == "COMPLETED":
                earlier = load(stored.response)
                if earlier is not None:
                    await append_audit_events(session, [_audit(ctx, "OK", {"replay": "true"})], now)
                    return earlier
            result, done = await work(session)
            await _record_completion(session, ctx, stored, dump(result), done, now)
            return result
    except HubError as error:
        if not isinstance(error, RequestIdReused):
            await _record_failure(db, ctx, error, now)
        else:
            async with db.write("privacy.audit") as session:
                await append_audit_events(session, [_audit(ctx, error.reason, {})], now)
        raise


async def _record_completion(
    session: AsyncSession,
    ctx: RequestContext,
    stored: PrivacyRequest | None,
    response: bytes | None,
    done: Done,
    now: dt.datetime,
) -> None:
    values = {
        "kind": ctx.kind,
        "subject_ref": ctx.subject_ref,
        "status": "COMPLETED",
        "outcome": done.facts,
        "response": response,
        "actor": ctx.actor,
        "created_at": now,
    }
    if stored is None:
        session.add(PrivacyRequest(tenant_id=ctx.tenant_id, request_id=ctx.request_id, **values))
    else:
        for name, value in values.items():
            setattr(stored, name, value)
    await session.flush()
    await append_audit_events(session, [*done.extra_events, _audit(ctx, "OK", done.facts)], now)


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


@dataclass(frozen=True)
class RequestPosition:
    """Where a page of privacy requests (newest first) ends."""

    created_at: dt.datetime
    request_id: str


async def list_requests(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    before: RequestPosition | None,
    limit: int,
) -> Sequence[PrivacyRequest]:
    """Privacy requests of a tenant, newest first, after a position."""
    query = select(PrivacyRequest).where(PrivacyRequest.tenant_id == tenant_id)
    if before is not None:
        query = query.where(
            (PrivacyRequest.created_at < before.created_at)
            | (
                (PrivacyRequest.created_at == before.created_at)
                & (PrivacyRequest.request_id < before.request_id)
            )
        )
    async with db.read("privacy.requests") as session:
        rows = await session.scalars(
            query.order_by(
                PrivacyRequest.created_at.desc(), PrivacyRequest.request_id.desc()
            ).limit(limit)
        )
        return list(rows)
