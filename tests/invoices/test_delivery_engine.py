"""The delivery engine under pressure: circuit breaker, pacing, backpressure, alerts, scale-out."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import select, update

from clients.fbr_simulator import FbrSimulator
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.api.ingest_stream import InvoiceWindow
from server.app import Hub, start_hub
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.monitor import QueueMonitor
from tests.conftest import Tenant, hub_settings, postgres_only
from tests.helpers import metric_points, proto_invoice, results_until, stop_monitor, submit


async def test_an_fbr_outage_opens_the_circuit_and_recovery_closes_it(
    database_url: str, simulator: FbrSimulator, tenant: Tenant, db: Database
) -> None:
    port = int(simulator.base_url.rsplit(":", 1)[1])
    settings = hub_settings(
        database_url,
        simulator.base_url,
        breaker_failure_threshold=3,
        breaker_open_seconds=0.2,
        breaker_max_open_seconds=0.4,
        forwarder_concurrency=4,
    )
    await simulator.stop()  # FBR is down: connections are refused
    hub = await start_hub(settings, db=Database(database_url))
    try:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
            (response,) = await submit(stub, tenant, [proto_invoice(f"OUT-{i}") for i in range(20)])
            # Ingest keeps accepting while FBR is down.
            assert all(a.outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED for a in response.acks)
            (opened,) = await results_until(stub, tenant, 1, include_alerts=True)
            assert opened.event.kind == invoice_pb2.RESULT_KIND_ALERT
            assert opened.event.alert.kind == invoice_pb2.ALERT_KIND_FBR_CIRCUIT_OPEN
            assert opened.event.alert.endpoint == "di:sandbox"
            await simulator.start(port=port)  # FBR is back
            events = await results_until(
                stub, tenant, 21, cursor=opened.cursor, include_alerts=True
            )
    finally:
        await hub.stop(grace=1.0)
    kinds = [e.event.kind for e in events]
    assert kinds.count(invoice_pb2.RESULT_KIND_ACCEPTED) == 20
    closed = [e for e in events if e.event.kind == invoice_pb2.RESULT_KIND_ALERT]
    assert [e.event.alert.kind for e in closed] == [invoice_pb2.ALERT_KIND_FBR_CIRCUIT_CLOSED]
    async with db.read() as session:
        failed = (
            await session.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.outcome == "retryable")
            )
        ).all()
    # Without a breaker every invoice would be tried again and again through the outage;
    # with it, the first window fails and then only probes go out.
    assert len(failed) < 20
    assert simulator.duplicates() == {}


async def test_tenant_rate_limit_paces_deliveries(
    database_url: str, simulator: FbrSimulator, tenant: Tenant, db: Database
) -> None:
    settings = hub_settings(
        database_url, simulator.base_url, tenant_rate_per_second=20.0, tenant_burst=1.0
    )
    hub = await start_hub(settings, db=Database(database_url))
    try:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
            await submit(stub, tenant, [proto_invoice(f"RATE-{i}") for i in range(11)])
            await results_until(stub, tenant, 11)
    finally:
        await hub.stop(grace=1.0)
    async with db.read() as session:
        starts = sorted((await session.scalars(select(DeliveryAttempt.started_at))).all())
    # 11 sends at 20/s with a burst of 1 need at least 10 intervals of 50 ms.
    assert (starts[-1] - starts[0]).total_seconds() >= 0.45


async def test_full_tenant_backlog_holds_ingest_until_it_drains(
    database_url: str, simulator: FbrSimulator, tenant: Tenant, db: Database
) -> None:
    settings = hub_settings(
        database_url, simulator.base_url, forwarder_enabled=False, tenant_max_pending=5
    )
    hub = await start_hub(settings, db=Database(database_url))
    try:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
            call = stub.SubmitInvoices(metadata=tenant.metadata)
            await call.write(
                invoice_service_pb2.SubmitInvoicesRequest(
                    invoices=[proto_invoice(f"FULL-{i}") for i in range(5)]
                )
            )
            first = await call.read()
            assert len(first.acks) == 5
            await call.write(
                invoice_service_pb2.SubmitInvoicesRequest(invoices=[proto_invoice("FULL-5")])
            )
            # The backlog is at its limit: the second batch is not taken in.
            read = asyncio.ensure_future(call.read())
            done, _ = await asyncio.wait({read}, timeout=1.5)
            assert not done
            async with db.write() as session:
                await session.execute(update(Invoice).values(state=InvoiceState.ACCEPTED.value))
            second = await asyncio.wait_for(read, 10)
            assert [a.erp_reference for a in second.acks] == ["FULL-5"]
            await call.done_writing()
    finally:
        await hub.stop(grace=1.0)


async def test_window_blocks_the_reader_until_acks_free_room() -> None:
    window = InvoiceWindow(10)
    await window.acquire(6)
    waiter = asyncio.ensure_future(window.acquire(6))
    await asyncio.sleep(0)
    assert not waiter.done()
    await window.release(6)
    await asyncio.wait_for(waiter, 1)
    assert window.used == 6
    big = asyncio.ensure_future(window.acquire(50))  # larger than the window: waits for empty
    await asyncio.sleep(0)
    assert not big.done()
    await window.release(6)
    await asyncio.wait_for(big, 1)


async def test_monitor_alerts_on_stuck_and_in_doubt_invoices(
    hub: Hub,
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    tenant: Tenant,
    db: Database,
) -> None:
    # One monitor speaks for the cluster: the hub's hands over, as a stopping hub's does.
    await stop_monitor(hub)
    await submit(invoices, tenant, [proto_invoice(f"STUCK-{i}") for i in range(3)])
    await results_until(invoices, tenant, 3)
    async with db.write() as session:
        ids = (await session.scalars(select(Invoice.id).order_by(Invoice.erp_reference))).all()
        await session.execute(
            update(Invoice).where(Invoice.id == ids[0]).values(state=InvoiceState.IN_DOUBT.value)
        )
        await session.execute(
            update(Invoice)
            .where(Invoice.id.in_(ids[1:]))
            .values(
                state=InvoiceState.QUEUED.value,
                next_attempt_at=dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
            )
        )
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    monitor = QueueMonitor(
        db, Notifier(), interval_seconds=60, stuck_after_seconds=3600, clock=lambda: later
    )
    try:
        (health,) = await monitor.check()
        assert health.in_doubt == 1 and health.stuck == 2 and health.pending == 2
        assert await monitor.check()  # unchanged counts: no second alert
    finally:
        await monitor.close()
    alerts = await results_until(invoices, tenant, 5, include_alerts=True)
    kinds = [m.event.alert.kind for m in alerts if m.event.kind == invoice_pb2.RESULT_KIND_ALERT]
    assert sorted(kinds) == sorted(
        [invoice_pb2.ALERT_KIND_STUCK_INVOICES, invoice_pb2.ALERT_KIND_IN_DOUBT_INVOICES]
    )
    stuck = next(m for m in alerts if m.event.alert.kind == invoice_pb2.ALERT_KIND_STUCK_INVOICES)
    assert stuck.event.alert.invoice_count == 2
    assert stuck.event.alert.oldest_age.seconds >= 7000


@postgres_only  # LISTEN/NOTIFY is PostgreSQL's; SQLite runs one hub process
async def test_a_follower_on_another_hub_sees_results_promptly(
    simulator: FbrSimulator, tenant: Tenant, database_url: str
) -> None:
    # Hub B polls only every minute: a prompt event can only come from NOTIFY.
    hub_a = await start_hub(
        hub_settings(database_url, simulator.base_url), db=Database(database_url)
    )
    hub_b = await start_hub(
        hub_settings(
            database_url, simulator.base_url, forwarder_enabled=False, results_poll_seconds=60
        ),
        db=Database(database_url),
    )
    try:
        async with (
            grpc.aio.insecure_channel(hub_a.address) as a,
            grpc.aio.insecure_channel(hub_b.address) as b,
        ):
            stub_a = invoice_service_pb2_grpc.InvoiceServiceStub(a)
            stub_b = invoice_service_pb2_grpc.InvoiceServiceStub(b)
            call = stub_b.StreamResults(
                invoice_service_pb2.StreamResultsRequest(follow=True), metadata=tenant.metadata
            )
            caught_up = await call.read()
            assert caught_up.HasField("heartbeat_time") and not caught_up.HasField("event")
            # B is now waiting; the event is produced and recorded by A.
            await submit(stub_a, tenant, [proto_invoice("XPROC-1")])
            event = await asyncio.wait_for(call.read(), 15)
            call.cancel()
    finally:
        await hub_a.stop(grace=1.0)
        await hub_b.stop(grace=1.0)
    assert event.event.erp_reference == "XPROC-1"


async def test_delivery_metrics_are_recorded_without_personal_data(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    tenant: Tenant,
    metric_reader: InMemoryMetricReader,
) -> None:
    await submit(invoices, tenant, [proto_invoice(f"MET-{i}") for i in range(3)])
    await results_until(invoices, tenant, 3)
    points = metric_points(metric_reader, "fbrhub.fbr.requests")
    accepted = [
        p
        for p in points
        if p.attributes.get("fbrhub.fbr.outcome") == "accepted"
        and p.attributes.get("http.response.status_code") == 200
    ]
    assert sum(p.value for p in accepted) >= 3
    labels = {k for p in points for k in p.attributes}
    assert labels <= {
        "fbrhub.fbr.endpoint",
        "fbrhub.fbr.outcome",
        "http.response.status_code",
        "fbrhub.fbr.error_code",
    }
