"""The audit trail: hash chain verification, paging, resumable follow streams."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import sqlalchemy as sa

from fbrhub.v1 import audit_service_pb2 as pb
from fbrhub.v1 import audit_service_pb2_grpc
from server.audit.trail import NewAuditEvent, append_audit_events, record_audit
from server.audit.verify import verify_chain
from server.db.engine import Database
from server.db.models import AuditEvent
from tests.conftest import RoleKeys


def events(tenant_id: uuid.UUID, count: int, start: int = 0) -> list[NewAuditEvent]:
    return [
        NewAuditEvent(
            tenant_id=tenant_id,
            actor="system:test",
            action="invoice.accepted",
            resource=f"invoices/{uuid.UUID(int=start + i)}",
            details={"state": "ACCEPTED"},
        )
        for i in range(count)
    ]


async def chain_of(db: Database, tenant_id: uuid.UUID, count: int) -> None:
    async with db.write() as session:
        await append_audit_events(session, events(tenant_id, count))


async def execute(db: Database, statement: sa.Executable) -> None:
    async with db.write() as session:
        await session.execute(statement)


def where(tenant_id: uuid.UUID, seq: int) -> sa.ColumnElement[bool]:
    return sa.and_(AuditEvent.tenant_id == tenant_id, AuditEvent.seq == seq)


async def chain_length(db: Database, tenant_id: uuid.UUID) -> int:
    """How many events the chain holds, e.g. the fixtures' tenant.create and apikey.create."""
    return (await verify_chain(db, tenant_id)).checked_count


async def test_an_untouched_chain_verifies_and_concurrent_appends_stay_chained(
    db: Database, role_keys: RoleKeys
) -> None:
    tenant_id = role_keys.tenant_id
    before = await chain_length(db, tenant_id)
    await asyncio.gather(*(record_audit(db, events(tenant_id, 5, 10 * i)) for i in range(8)))
    verdict = await verify_chain(db, tenant_id)
    assert verdict.intact and verdict.checked_count == before + 40
    assert len(verdict.head_hash) == 64


@pytest.mark.parametrize("tamper", ["edit", "delete_middle", "delete_last", "reorder"])
async def test_tampering_with_any_row_is_detected_and_located(
    db: Database, role_keys: RoleKeys, gov_channel: grpc.aio.Channel, tamper: str
) -> None:
    tenant_id = role_keys.tenant_id
    base = await chain_length(db, tenant_id)
    await chain_of(db, tenant_id, 10)
    if tamper == "edit":
        await execute(
            db,
            sa.update(AuditEvent)
            .where(where(tenant_id, base + 4))
            .values(outcome="NOT_WHAT_HAPPENED"),
        )
        expected = (base + 4, pb.CHAIN_PROBLEM_EVENT_EDITED)
    elif tamper == "delete_middle":
        await execute(db, sa.delete(AuditEvent).where(where(tenant_id, base + 6)))
        expected = (base + 6, pb.CHAIN_PROBLEM_EVENT_MISSING)
    elif tamper == "delete_last":
        await execute(db, sa.delete(AuditEvent).where(where(tenant_id, base + 10)))
        expected = (base + 10, pb.CHAIN_PROBLEM_EVENT_MISSING)
    else:  # swap two events (through a free number, the key is unique)
        first, second = base + 3, base + 4
        await execute(db, sa.update(AuditEvent).where(where(tenant_id, first)).values(seq=1000))
        await execute(db, sa.update(AuditEvent).where(where(tenant_id, second)).values(seq=first))
        await execute(db, sa.update(AuditEvent).where(where(tenant_id, 1000)).values(seq=second))
        expected = (first, pb.CHAIN_PROBLEM_EVENT_OUT_OF_ORDER)
    stub = audit_service_pb2_grpc.AuditServiceStub(gov_channel)
    reply = await stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(), metadata=role_keys.metadata("auditor")
    )
    assert not reply.intact
    assert (reply.first_bad_sequence, reply.problem) == expected
    assert str(expected[0]) in reply.message


async def test_list_pages_and_filters(
    db: Database, role_keys: RoleKeys, gov_channel: grpc.aio.Channel
) -> None:
    tenant_id = role_keys.tenant_id
    base = await chain_length(db, tenant_id)
    await chain_of(db, tenant_id, 7)
    await record_audit(
        db, [NewAuditEvent(tenant_id, "apikey:x", "apikey.revoke", "apikeys/x", "OK")]
    )
    stub = audit_service_pb2_grpc.AuditServiceStub(gov_channel)
    md = role_keys.metadata("auditor")
    seen, token = [], ""
    while True:
        page = await stub.ListAuditEvents(
            pb.ListAuditEventsRequest(page_size=3, page_token=token, actions=["invoice.accepted"]),
            metadata=md,
        )
        seen += [e.sequence for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(base + 1, base + 8))
    with pytest.raises(grpc.aio.AioRpcError) as changed:
        first = await stub.ListAuditEvents(pb.ListAuditEventsRequest(page_size=3), metadata=md)
        await stub.ListAuditEvents(
            pb.ListAuditEventsRequest(
                page_size=3, page_token=first.next_page_token, actions=["apikey.revoke"]
            ),
            metadata=md,
        )
    assert changed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    revokes = await stub.ListAuditEvents(
        pb.ListAuditEventsRequest(resource_prefix="apikeys/"), metadata=md
    )
    # The fixtures' keys (the tenant's ERP key and one per role) were created audited.
    fixture_keys = len(role_keys.keys) + 1
    assert [e.action for e in revokes.events] == ["apikey.create"] * fixture_keys + [
        "apikey.revoke"
    ]


async def test_stream_resumes_from_cursor_follows_and_sends_heartbeats(
    db: Database, role_keys: RoleKeys, gov_channel: grpc.aio.Channel
) -> None:
    tenant_id = role_keys.tenant_id
    base = await chain_length(db, tenant_id)
    await chain_of(db, tenant_id, 3)
    stub = audit_service_pb2_grpc.AuditServiceStub(gov_channel)
    md = role_keys.metadata("auditor")
    replay = [m async for m in stub.StreamAuditEvents(pb.StreamAuditEventsRequest(), metadata=md)]
    assert [m.event.sequence for m in replay] == list(range(1, base + 4))
    last = base + 3
    call = stub.StreamAuditEvents(
        pb.StreamAuditEventsRequest(cursor=replay[-2].cursor, follow=True), metadata=md
    )
    got: list[int] = []
    heartbeats, last_cursor = 0, ""
    async with asyncio.timeout(20):
        async for message in call:
            last_cursor = message.cursor
            if message.HasField("event"):
                got.append(message.event.sequence)
                if got == [last]:
                    # No notifier: as if written by another process; the poll finds them.
                    await record_audit(db, events(tenant_id, 2, 100))
                if len(got) == 3:
                    break
            else:
                assert message.HasField("heartbeat_time") and message.cursor
                heartbeats += 1
                if got == [last] and heartbeats > 5:
                    raise AssertionError("new events never arrived")
    call.cancel()
    assert got == [last, last + 1, last + 2]
    idle = stub.StreamAuditEvents(
        pb.StreamAuditEventsRequest(cursor=last_cursor, follow=True), metadata=md
    )
    async with asyncio.timeout(10):
        first = await idle.read()
    idle.cancel()
    assert first.HasField("heartbeat_time") and not first.HasField("event")


async def test_another_tenants_chain_and_cursor_are_not_visible(
    db: Database, role_keys: RoleKeys, gov_channel: grpc.aio.Channel
) -> None:
    own = await chain_length(db, role_keys.tenant_id)
    other = uuid.uuid4()
    await chain_of(db, other, 4)
    stub = audit_service_pb2_grpc.AuditServiceStub(gov_channel)
    md = role_keys.metadata("auditor")
    listed = await stub.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=md)
    assert all(not e.resource.startswith("invoices/") for e in listed.events)
    verdict = await stub.VerifyAuditChain(pb.VerifyAuditChainRequest(), metadata=md)
    assert verdict.checked_count == own
