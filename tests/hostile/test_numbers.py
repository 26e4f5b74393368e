"""Numbers no ERP should send: refused at once, never stalling the hub, never in doubt."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select, update

from clients.fbr_simulator import FbrSimulator
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.access.tenants import load_tenant
from server.app import Hub, settle_garbage_collector, start_hub
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.intake import Ingestor
from tests.conftest import Tenant, hub_settings
from tests.helpers import eventually, proto_invoice, sample, submit, submitted, to_proto, violations

# The largest numbers the rules accept (13 digits of rupees, 11 of quantity), tax consistent.
_MAX_LINE = {
    "quantity": "99999999999.9999",
    "value_sales_excluding_st": "9999999999999.99",
    "sales_tax_applicable": "1800000000000.00",
    "total_values": "9999999999999.99",
    "fixed_notified_value_or_retail_price": "9999999999999.99",
    "fed_payable": "9999999999999.99",
    "discount": "9999999999999.99",
}
HUGE = ("9e999999", "1e1000000", "1E+39", "9" * 40)


def _with_numbers(reference: str, lines: int = 1, **numbers: str) -> invoice_pb2.Invoice:
    invoice = sample(reference)
    first = {**invoice["items"][0], **numbers}
    invoice["items"] = [first] * lines
    return to_proto(invoice)


async def test_huge_numbers_are_refused_with_their_field_and_the_batch_goes_on(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    batch = [_with_numbers(f"HUGE-{i}", quantity=text) for i, text in enumerate(HUGE)]
    batch.append(proto_invoice("FINE-1"))
    started = time.perf_counter()
    checked = await invoices.ValidateInvoices(
        invoice_service_pb2.ValidateInvoicesRequest(invoices=batch), metadata=tenant.metadata
    )
    (response,) = await submit(invoices, tenant, batch)
    assert time.perf_counter() - started < 5
    for index in range(len(HUGE)):
        assert not checked.results[index].valid
        paths = {v.field for v in violations(checked.results[index].error)}
        assert f"invoices[{index}].items[0].quantity" in paths
        assert response.acks[index].outcome == invoice_service_pb2.ACK_OUTCOME_REJECTED
    assert checked.results[-1].valid
    assert response.acks[-1].outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED


async def test_an_unsendable_stored_invoice_is_refused_never_in_doubt(
    database_url: str, db: Database, simulator: FbrSimulator, tenant: Tenant
) -> None:
    """An invoice stored before the bounds existed: its body cannot be built, nothing is sent."""
    profile = await load_tenant(db, tenant.id)
    assert profile is not None
    ingestor = Ingestor(db, Notifier())
    (ack,) = await ingestor.submit(profile, [submitted("OLD-HUGE")])
    assert ack.invoice_id is not None
    stored = sample("OLD-HUGE")
    stored["items"][0]["quantity"] = "9e999999"
    async with db.write("test.plant") as session:
        await session.execute(
            update(Invoice).where(Invoice.id == ack.invoice_id).values(payload=stored)
        )
    hub = await start_hub(hub_settings(database_url, simulator.base_url), db=Database(database_url))
    try:
        await eventually(lambda: _state_is(db, ack.invoice_id, InvoiceState.REJECTED_FBR))
        async with db.read("test.attempts") as session:
            row = await session.get(Invoice, ack.invoice_id)
            attempts = (
                await session.scalars(
                    select(DeliveryAttempt).where(DeliveryAttempt.invoice_id == ack.invoice_id)
                )
            ).all()
        assert row is not None and row.error is not None
        assert row.error["reason"] == "INVOICE_NOT_SENDABLE"
        assert [a.outcome for a in attempts] == ["rejected"]
        assert simulator.issued_count(str(ack.invoice_id)) == 0
        assert simulator.injector.requests == 0
    finally:
        await hub.stop(grace=1.0)


async def _state_is(db: Database, invoice_id: uuid.UUID | None, state: InvoiceState) -> bool:
    async with db.read("test.state") as session:
        row = await session.get(Invoice, invoice_id)
    return row is not None and row.state == state.value


async def test_health_answers_within_100_ms_while_the_worst_accepted_numbers_are_sent(
    hub: Hub, invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    batch = [_with_numbers(f"MAX-{i}", lines=200, **_MAX_LINE) for i in range(8)]
    (response,) = await submit(invoices, tenant, batch)
    assert {a.outcome for a in response.acks} == {invoice_service_pb2.ACK_OUTCOME_ACCEPTED}
    ids = [uuid.UUID(a.invoice_id) for a in response.acks]
    # As `fbrhub serve` does after start-up: without it a full collection of the test
    # process's heap pauses every task for up to ~250 ms, numbers or not.
    thresholds = gc.get_threshold()
    settle_garbage_collector()
    try:
        latencies = await _health_latencies(hub, ids)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert latencies, "the invoices were delivered before a health check could be made"
    assert max(latencies) < 0.1, sorted(latencies)[-5:]


async def _health_latencies(hub: Hub, ids: list[uuid.UUID]) -> list[float]:
    """Health check round trips, one after another, until every invoice is final."""
    async with grpc.aio.insecure_channel(hub.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest())  # the connection is warm
        latencies = []
        while not await _all_final(hub.db, ids):
            started = time.perf_counter()
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            latencies.append(time.perf_counter() - started)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            await asyncio.sleep(0.01)
    return latencies


async def _all_final(db: Database, ids: list[uuid.UUID]) -> bool:
    async with db.read("test.final") as session:
        states = (await session.scalars(select(Invoice.state).where(Invoice.id.in_(ids)))).all()
    return all(s not in ("QUEUED", "SENDING", "RETRY_WAIT") for s in states)
