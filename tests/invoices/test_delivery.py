"""Delivery to FBR: outcomes, retries, in-doubt handling and crash recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from clients.fbr_simulator import Fault, FbrSimulator
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.access.tenants import load_tenant
from server.app import Hub, start_hub
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState, ResultEvent
from server.db.notify import Notifier
from server.invoices.delivery import Forwarder, ForwarderConfig
from server.invoices.intake import Ingestor
from tests.conftest import OTHER_TOKEN, SELLER_NTN, Tenant, hub_settings, make_tenant
from tests.helpers import eventually, proto_invoice, results_until, submit, submitted, violations


class NeverSends:
    """An FBR sender for tests that only claim: sending anything is a test failure."""

    async def post_invoice(self, *args: object, **kwargs: object) -> DeliveryOutcome:
        raise AssertionError("nothing is sent in this test")


async def get_record(
    stub: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, invoice_id: str
) -> invoice_pb2.InvoiceRecord:
    response = await stub.GetInvoice(
        invoice_service_pb2.GetInvoiceRequest(invoice_id=invoice_id), metadata=tenant.metadata
    )
    return response.invoice


@pytest.fixture
async def short_timeout_hub(
    database_url: str, simulator: FbrSimulator, db: Database
) -> AsyncIterator[Hub]:
    """A hub whose FBR read timeout is short, so a hanging FBR is noticed quickly."""
    settings = hub_settings(database_url, simulator.base_url, fbr_read_timeout_seconds=0.5)
    running = await start_hub(settings, db=Database(database_url))
    yield running
    await running.stop(grace=1.0)


async def test_timeout_after_send_is_in_doubt_and_never_resent(
    short_timeout_hub: Hub, simulator: FbrSimulator, tenant: Tenant
) -> None:
    import grpc

    simulator.script(Fault.ACCEPT_THEN_HANG)
    async with grpc.aio.insecure_channel(short_timeout_hub.address) as channel:
        stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
        (first,) = await submit(stub, tenant, [proto_invoice("HANG-1")])
        doubtful_id = first.acks[0].invoice_id
        (event,) = await results_until(stub, tenant, 1)
        assert event.event.kind == invoice_pb2.RESULT_KIND_IN_DOUBT
        assert event.event.invoice_id == doubtful_id
        # The forwarder keeps going: a later invoice is delivered...
        await submit(stub, tenant, [proto_invoice("HANG-2")])
        (later,) = await results_until(stub, tenant, 1, cursor=event.cursor)
        assert later.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED
        # ...while the doubtful one was sent exactly once and FBR issued exactly one number.
        record = await get_record(stub, tenant, doubtful_id)
    assert record.state == invoice_pb2.INVOICE_STATE_IN_DOUBT
    assert [a.outcome for a in record.attempts] == [invoice_pb2.ATTEMPT_OUTCOME_IN_DOUBT]
    assert simulator.issued_count(doubtful_id) == 1
    assert simulator.duplicates() == {}


async def test_gateway_faults_are_retried_until_accepted(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
) -> None:
    simulator.script(Fault.GATEWAY_5XX, Fault.TOO_MANY_REQUESTS)
    (response,) = await submit(invoices, tenant, [proto_invoice("RETRY-1")])
    (event,) = await results_until(invoices, tenant, 1)
    assert event.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED
    record = await get_record(invoices, tenant, response.acks[0].invoice_id)
    assert [a.outcome for a in record.attempts] == [
        invoice_pb2.ATTEMPT_OUTCOME_RETRYABLE,
        invoice_pb2.ATTEMPT_OUTCOME_RETRYABLE,
        invoice_pb2.ATTEMPT_OUTCOME_ACCEPTED,
    ]
    assert simulator.issued_count(response.acks[0].invoice_id) == 1


@pytest.mark.parametrize("fault", [Fault.HTTP_500_PLAIN, Fault.HTML_200, Fault.ACCEPT_THEN_DROP])
async def test_ambiguous_answers_put_the_invoice_in_doubt(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    fault: Fault,
) -> None:
    simulator.script(fault)
    (response,) = await submit(invoices, tenant, [proto_invoice("AMBIG-1")])
    (event,) = await results_until(invoices, tenant, 1)
    assert event.event.kind == invoice_pb2.RESULT_KIND_IN_DOUBT
    record = await get_record(invoices, tenant, response.acks[0].invoice_id)
    assert record.state == invoice_pb2.INVOICE_STATE_IN_DOUBT
    assert len(record.attempts) == 1
    assert record.error.message


async def test_fbr_rejection_is_reported_with_code_and_field(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, db: Database
) -> None:
    # The tenant's token belongs to another seller at FBR: FBR refuses it (0401).
    mismatched = await make_tenant(db, SELLER_NTN, OTHER_TOKEN)
    (response,) = await submit(invoices, mismatched, [proto_invoice("REJ-1")])
    (event,) = await results_until(invoices, mismatched, 1)
    assert event.event.kind == invoice_pb2.RESULT_KIND_REJECTED
    found = {(v.field, v.reason) for v in violations(event.event.error)}
    assert ("seller_ntn_cnic", "FBR_0401") in found
    record = await get_record(invoices, mismatched, response.acks[0].invoice_id)
    assert record.state == invoice_pb2.INVOICE_STATE_REJECTED_FBR
    assert not record.fbr_invoice_number


async def test_wrong_fbr_token_is_retried_with_backoff_not_given_up(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    db: Database,
) -> None:
    bad_token = await make_tenant(db, SELLER_NTN, "not-a-token")
    (response,) = await submit(invoices, bad_token, [proto_invoice("AUTH-1")])
    invoice_id = uuid.UUID(response.acks[0].invoice_id)

    async def retried_twice() -> bool:
        async with db.read() as session:
            attempts = (
                await session.scalars(
                    select(DeliveryAttempt).where(DeliveryAttempt.invoice_id == invoice_id)
                )
            ).all()
        return sum(a.outcome == "retryable" for a in attempts) >= 2

    await eventually(retried_twice)
    async with db.read() as session:
        row = await session.get(Invoice, invoice_id)
    assert row is not None and row.state in {"RETRY_WAIT", "SENDING"}
    assert simulator.issued_count(str(invoice_id)) == 0


async def test_expired_lease_becomes_in_doubt_not_queued(db: Database, tenant: Tenant) -> None:
    # A worker claims an invoice and "dies" before recording anything. Once the lease runs
    # out, another worker must move it to IN_DOUBT (it may have been sent), never re-queue it.
    now = dt.datetime.now(dt.UTC)
    clock = [now]
    notifier = Notifier()
    profile = await load_tenant(db, tenant.id)
    assert profile is not None
    ingestor = Ingestor(db, notifier, clock=lambda: clock[0])
    (ack,) = await ingestor.submit(profile, [submitted("LEASE-1")])
    config = ForwarderConfig(lease_seconds=30)

    dead = Forwarder(db, NeverSends(), notifier, config, worker_id="dead", clock=lambda: clock[0])
    claimed = await dead.claim_due(10)
    assert [c.invoice_id for c in claimed] == [ack.invoice_id]
    survivor = Forwarder(
        db,
        NeverSends(),
        notifier,
        config,
        worker_id="alive",
        clock=lambda: clock[0],
        rng=random.Random(1),
    )
    assert await survivor.reclaim_expired_leases() == 0
    assert await survivor.claim_due(10) == []  # leased rows are not claimable
    clock[0] = now + dt.timedelta(seconds=31)
    assert await survivor.reclaim_expired_leases() == 1
    assert await survivor.claim_due(10) == []
    async with db.read() as session:
        row = await session.get(Invoice, ack.invoice_id)
        events = (await session.scalars(select(ResultEvent))).all()
        attempts = (await session.scalars(select(DeliveryAttempt))).all()
    assert row is not None and row.state == InvoiceState.IN_DOUBT
    assert [e.kind for e in events] == ["IN_DOUBT"]
    assert [(a.number, a.outcome) for a in attempts] == [(1, "in_doubt")]
    # The dead worker never recorded its claim in the audit trail; recovery does, from the
    # attempt row, so the trail still shows every state change.
    from server.db.models import AuditEvent

    async with db.read() as session:
        trail = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.resource == f"invoices/{ack.invoice_id}")
                .order_by(AuditEvent.seq)
            )
        ).all()
    assert [(e.action, e.actor) for e in trail] == [
        ("invoice.queued", trail[0].actor),
        ("invoice.sending", "system:dead"),
        ("invoice.in_doubt", "system:lease-recovery"),
    ]
    assert trail[1].details["claimed_at"] == now.isoformat()


async def test_claimed_but_unsent_invoices_are_released_back_to_the_queue(
    db: Database, tenant: Tenant
) -> None:
    # The forwarder holds a few claimed invoices ready; when it stops (or FBR's circuit
    # opens) before sending them, they go back to the queue with the attempt marked
    # not_sent, and an invoice whose lease another worker took over is left alone.
    from server.db.models import AuditEvent

    notifier = Notifier()
    profile = await load_tenant(db, tenant.id)
    assert profile is not None
    ingestor = Ingestor(db, notifier)
    acks = await ingestor.submit(profile, [submitted(f"HOLD-{i}") for i in range(3)])
    worker = Forwarder(db, NeverSends(), notifier, ForwarderConfig(), worker_id="holder")
    claimed = await worker.claim_due(10)
    assert {c.invoice_id for c in claimed} == {a.invoice_id for a in acks}
    taken_over = claimed[0]
    async with db.write() as session:
        row = await session.get(Invoice, taken_over.invoice_id)
        assert row is not None
        row.lease_owner = "someone-else"

    assert await worker.outbox.release(claimed, worker_id="holder") == 2

    async with db.read() as session:
        rows = {r.id: r for r in (await session.scalars(select(Invoice))).all()}
        attempts = (await session.scalars(select(DeliveryAttempt))).all()
        released = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "invoice.released"))
        ).all()
    assert rows[taken_over.invoice_id].state == InvoiceState.SENDING
    for item in claimed[1:]:
        row = rows[item.invoice_id]
        assert (row.state, row.lease_owner, row.attempt_count) == (InvoiceState.QUEUED, None, 1)
    outcomes = {a.invoice_id: a.outcome for a in attempts}
    assert outcomes[taken_over.invoice_id] is None
    assert [outcomes[c.invoice_id] for c in claimed[1:]] == ["not_sent", "not_sent"]
    assert len(released) == 2
    # GetInvoice shows such an attempt as NOT_SENT.
    from server.api.convert.invoices import record_to_proto

    shown = record_to_proto(
        rows[claimed[1].invoice_id],
        [a for a in attempts if a.invoice_id == claimed[1].invoice_id],
    )
    assert [a.outcome for a in shown.attempts] == [invoice_pb2.ATTEMPT_OUTCOME_NOT_SENT]
    # Released invoices are due again at once, under the next attempt number.
    again = await worker.claim_due(10)
    assert sorted((c.invoice_id, c.attempt) for c in again) == sorted(
        (c.invoice_id, 2) for c in claimed[1:]
    )
    # Given back after an earlier attempt, an invoice waits as a retry, not as new.
    assert await worker.outbox.release(again, worker_id="holder") == 2
    async with db.read() as session:
        for item in again:
            row = await session.get(Invoice, item.invoice_id, populate_existing=True)
            assert row is not None
            assert (row.state, row.attempt_count) == (InvoiceState.RETRY_WAIT, 2)


class GatedFbr:
    """Stands in for FBR: every post waits for the gate, then is accepted."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.posted = 0

    async def post_invoice(self, *args: object, **kwargs: object) -> DeliveryOutcome:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        self.posted += 1
        return DeliveryOutcome(
            OutcomeKind.ACCEPTED, 200, fbr_invoice_number=f"7000007DI{self.posted:013d}"
        )


async def test_forwarder_fills_the_window_holds_a_buffer_and_gives_it_back_on_stop(
    db: Database, tenant: Tenant
) -> None:
    notifier = Notifier()
    profile = await load_tenant(db, tenant.id)
    assert profile is not None
    await Ingestor(db, notifier).submit(profile, [submitted(f"WIN-{i}") for i in range(40)])
    fbr = GatedFbr()
    config = ForwarderConfig(concurrency=4, prefetch=6, poll_seconds=0.05)
    forwarder = Forwarder(db, fbr, notifier, config, worker_id="windowed")
    running = asyncio.create_task(forwarder.run())

    async def states() -> dict[str, int]:
        async with db.read() as session:
            rows = await session.execute(
                select(Invoice.state, func.count()).group_by(Invoice.state)
            )
            return {str(state): int(count) for state, count in rows.all()}

    async def window_and_buffer_full() -> bool:
        return fbr.in_flight == 4 and (await states()).get("SENDING") == 10

    await eventually(window_and_buffer_full)
    await forwarder.stop()
    fbr.gate.set()  # the four in flight are answered; the six held were never sent
    await running

    assert fbr.most_in_flight == 4
    assert fbr.posted == 4
    assert await states() == {"ACCEPTED": 4, "QUEUED": 36}
    async with db.read() as session:
        outcomes = await session.execute(
            select(DeliveryAttempt.outcome, func.count()).group_by(DeliveryAttempt.outcome)
        )
        assert dict(outcomes.all()) == {"accepted": 4, "not_sent": 6}


async def test_two_workers_never_claim_the_same_invoice(db: Database, tenant: Tenant) -> None:
    notifier = Notifier()
    profile = await load_tenant(db, tenant.id)
    assert profile is not None
    ingestor = Ingestor(db, notifier)
    await ingestor.submit(profile, [submitted(f"PAIR-{i}") for i in range(40)])
    config = ForwarderConfig(claim_batch=7)
    workers = [Forwarder(db, NeverSends(), notifier, config, worker_id=f"w{i}") for i in range(3)]

    claimed: list[uuid.UUID] = []
    while True:
        rounds = await asyncio.gather(*(w.claim_due(7) for w in workers))
        batch = [c.invoice_id for r in rounds for c in r]
        if not batch:
            break
        claimed.extend(batch)
    assert len(claimed) == 40
    assert len(set(claimed)) == 40


async def test_every_state_change_is_in_the_audit_trail(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    db: Database,
) -> None:
    from server.audit.verify import verify_chain
    from server.db.models import AuditEvent

    simulator.script(Fault.GATEWAY_5XX)
    (response,) = await submit(invoices, tenant, [proto_invoice("AUD-1")])
    await results_until(invoices, tenant, 1)
    resource = f"invoices/{response.acks[0].invoice_id}"
    async with db.read() as session:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.tenant_id == tenant.id, AuditEvent.resource == resource)
                .order_by(AuditEvent.seq)
            )
        ).all()
    verdict = await verify_chain(db, tenant.id)
    assert [r.action for r in rows] == [
        "invoice.queued",
        "invoice.sending",
        "invoice.retry_wait",
        "invoice.sending",
        "invoice.accepted",
    ]
    assert rows[0].actor.startswith("apikey:")
    assert rows[2].details["http_status"] == "503"
    assert verdict.intact and verdict.checked_count >= 5
