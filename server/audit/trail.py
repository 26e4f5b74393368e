"""The audit trail: append-only events, hash-chained per tenant.

Each tenant's events are numbered 1, 2, 3... and each event's hash is
``SHA-256(previous hash | canonical JSON of the event's content)``. Appends lock the tenant's
row in ``audit_chain_heads`` (which also records the last number and hash), so numbers and
the chain follow commit order even with several writers, and deleting the newest events is
detected too. Events carry ids, codes and counts only: never personal data.

Events with no tenant (a call with an unknown API key) go to the chain of
:data:`SYSTEM_TENANT`. Verification lives in :mod:`server.audit.verify`, reading in
:mod:`server.audit.queries`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.clock import utcnow
from server.db.bulk import insert_rows
from server.db.engine import Database
from server.db.models import AuditChainHead, AuditEvent
from server.db.notify import Notifier, publish
from server.observability.tracing import current_trace_id

SYSTEM_TENANT = uuid.UUID(int=0)
GENESIS_HASH = "0" * 64
# What an event's hash covers besides the previous hash and the tenant (not the sequence).
_CONTENT_COLUMNS = (
    "event_time",
    "actor",
    "action",
    "resource",
    "outcome",
    "request_id",
    "trace_id",
    "details",
)


@dataclass(frozen=True)
class NewAuditEvent:
    """An event to append.

    Attributes:
        tenant_id: whose chain it goes to (:data:`SYSTEM_TENANT` when there is no tenant).
        actor: ``apikey:<key id>``, ``system:<component>`` or ``anonymous``.
        action: ``<area>.<verb>``, e.g. ``invoice.accepted``, ``privacy.erase``.
        resource: e.g. ``invoices/<id>``; ids only, never names or NTNs.
        outcome: ``OK`` or an UPPER_SNAKE reason.
        request_id: the request id of the call, if any.
        trace_id: the trace id; taken from the current span when empty.
        details: extra facts without personal data (states, counts, FBR codes).
    """

    tenant_id: uuid.UUID
    actor: str
    action: str
    resource: str
    outcome: str = "OK"
    request_id: str = ""
    trace_id: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


def audit_topic(tenant_id: uuid.UUID) -> str:
    """The notifier topic that wakes a tenant's audit stream followers."""
    return f"audit:{tenant_id}"


def event_hash(prev_hash: str, tenant_id: uuid.UUID, content: Mapping[str, Any]) -> str:
    """The chain hash of an event: previous hash + the canonical JSON of its content.

    The sequence number is deliberately not hashed: an event moved to another position
    still matches its own hash but no longer follows its predecessor, which tells a reorder
    (or a removal followed by renumbering) apart from an edit.
    """
    return _chain_hash(prev_hash, {"tenant_id": str(tenant_id), **content})


def _chain_hash(prev_hash: str, document: Mapping[str, Any]) -> str:
    """SHA-256 of the previous hash, ``|`` and ``document`` as JSON with sorted keys."""
    body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"|" + body).hexdigest()


def event_content(row: AuditEvent | dict[str, Any]) -> dict[str, Any]:
    """What an event's hash covers besides the previous hash and the tenant."""
    values: dict[str, Any] = (
        row if isinstance(row, dict) else {c: getattr(row, c) for c in _CONTENT_COLUMNS}
    )
    event_time: dt.datetime = values["event_time"]
    return {
        **{c: values[c] for c in _CONTENT_COLUMNS},
        "event_time": event_time.astimezone(dt.UTC).isoformat(),
        "details": dict(values["details"]),
    }


async def _lock_head(session: AsyncSession, tenant_id: uuid.UUID) -> AuditChainHead:
    query = (
        select(AuditChainHead)
        .where(AuditChainHead.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = await session.scalar(query)
    if head is not None:
        return head
    dialect = session.get_bind().dialect.name
    values = {"tenant_id": tenant_id, "last_seq": 0, "last_hash": GENESIS_HASH}
    if dialect == "postgresql":
        await session.execute(
            postgresql.insert(AuditChainHead).values(values).on_conflict_do_nothing()
        )
    else:
        await session.execute(sqlite.insert(AuditChainHead).values(values).on_conflict_do_nothing())
    head = await session.scalar(query)
    assert head is not None
    return head


async def append_audit_events(
    session: AsyncSession, events: Sequence[NewAuditEvent], now: dt.datetime | None = None
) -> None:
    """Append events inside the caller's transaction, chaining them per tenant.

    Call it last in the transaction (after ``append_results``): it locks each tenant's chain
    head until commit, in tenant-id order, so writers never deadlock. One SELECT ... FOR
    UPDATE, one batched INSERT and one UPDATE per tenant, whatever the number of events.
    Wake stream followers after commit with ``notifier.notify(audit_topic(tenant_id))``.
    """
    if not events:
        return
    now = now or utcnow()
    event_time = now.astimezone(dt.UTC).isoformat()
    trace_id = current_trace_id()
    by_tenant: dict[uuid.UUID, list[NewAuditEvent]] = defaultdict(list)
    for event in events:
        by_tenant[event.tenant_id].append(event)
    rows: list[dict[str, Any]] = []
    for tenant_id in sorted(by_tenant):
        head = await _lock_head(session, tenant_id)
        seq, prev = head.last_seq, head.last_hash
        tenant_text = str(tenant_id)
        for event in by_tenant[tenant_id]:
            seq += 1
            content = {
                "actor": event.actor[:64],
                "action": event.action[:64],
                "resource": event.resource[:128],
                "outcome": event.outcome[:64],
                "request_id": event.request_id[:64],
                "trace_id": (event.trace_id or trace_id)[:32],
                "details": {str(k): str(v) for k, v in event.details.items()},
            }
            # What event_hash(prev, tenant_id, event_content(row)) hashes, built without the
            # round trip through the row: the tenant and the time are the same for the batch.
            hashed = _chain_hash(
                prev, {"tenant_id": tenant_text, "event_time": event_time, **content}
            )
            rows.append(
                {
                    "tenant_id": tenant_id,
                    "seq": seq,
                    "event_time": now,
                    **content,
                    "prev_hash": prev,
                    "hash": hashed,
                }
            )
            prev = hashed
        await session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.tenant_id == tenant_id)
            .values(last_seq=seq, last_hash=prev)
        )
    await insert_rows(session, cast(Table, AuditEvent.__table__), rows, json_columns={"details"})
    await publish(session, (audit_topic(t) for t in by_tenant))


def invoice_event(
    tenant_id: uuid.UUID,
    invoice_id: uuid.UUID,
    action: str,
    *,
    actor: str,
    **details: str,
) -> NewAuditEvent:
    """An invoice state change (``invoice.<state>``) for the audit trail: ids and codes only."""
    return NewAuditEvent(
        tenant_id=tenant_id,
        actor=actor,
        action=f"invoice.{action}",
        resource=f"invoices/{invoice_id}",
        details={k: v for k, v in details.items() if v},
    )


async def record_audit(
    db: Database, events: Sequence[NewAuditEvent], notifier: Notifier | None = None
) -> None:
    """Append events in a transaction of their own, then wake stream followers."""
    async with db.write("audit.append") as session:
        await append_audit_events(session, events)
    if notifier is not None:
        for tenant_id in {e.tenant_id for e in events}:
            notifier.notify(audit_topic(tenant_id))
