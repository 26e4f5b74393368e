"""Telemetry that stays quiet: an idle hub exports no span, and a cancelled stream logs no error."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import event

from clients.fbr_simulator import FbrSimulator
from fbrhub.v1 import invoice_service_pb2, invoice_service_pb2_grpc
from server.app import Hub, start_hub
from server.db.engine import Database
from tests.conftest import Tenant, hub_settings
from tests.helpers import eventually, metric_points, proto_invoice, results_until, submit

POLL = 0.05


@pytest.fixture
async def busy_idle_hub(
    database_url: str, simulator: FbrSimulator, tenant: Tenant
) -> AsyncIterator[Hub]:
    """A hub whose every poll runs every 50 ms: forwarder, queue monitor, followers."""
    settings = hub_settings(
        database_url,
        simulator.base_url,
        forwarder_poll_seconds=POLL,
        monitor_interval_seconds=POLL,
        results_poll_seconds=POLL,
        audit_poll_seconds=POLL,
    )
    running = await start_hub(settings, db=Database(database_url))
    yield running
    await running.stop(grace=1.0)


class StatementCounter:
    """Counts the SQL statements a database's engines run (proof that polls happen)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._engines = {db.write_engine.sync_engine, db.read_engine.sync_engine}
        for engine in self._engines:
            event.listen(engine, "after_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1

    def close(self) -> None:
        for engine in self._engines:
            event.remove(engine, "after_cursor_execute", self._seen)


async def test_an_idle_hub_exports_no_span(
    busy_idle_hub: Hub, tenant: Tenant, traced: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(busy_idle_hub.address) as channel:
        follower = invoice_service_pb2_grpc.InvoiceServiceStub(channel).StreamResults(
            invoice_service_pb2.StreamResultsRequest(follow=True), metadata=tenant.metadata
        )
        await follower.read()  # caught up: from here on the follower only polls
        traced.clear()
        statements = StatementCounter(busy_idle_hub.db)
        try:
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest())  # probes are not traced

            async def polled_enough() -> bool:
                # Claims, tenant reads, queue checks and follower reads: about ten rounds.
                return statements.count >= 40

            await eventually(polled_enough, timeout=30)
            assert traced.get_finished_spans() == ()
        finally:
            statements.close()
            follower.cancel()


async def test_cancelled_streams_end_their_spans_without_logging_errors(
    hub: Hub,
    channel: grpc.aio.Channel,
    tenant: Tenant,
    traced: InMemorySpanExporter,
    metric_reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
    # A backlog, so that the cancels also land while the server is busy sending.
    await submit(stub, tenant, [proto_invoice(f"CANCEL-{i}") for i in range(150)])
    await results_until(stub, tenant, 150)
    method = "fbrhub.v1.InvoiceService/StreamResults"

    async def closed(count: int) -> bool:
        ended = [s for s in traced.get_finished_spans() if s.name == method]
        open_streams = sum(
            p.value
            for p in metric_points(metric_reader, "fbrhub.rpc.server.active_streams")
            if p.attributes.get("rpc.method") == method
        )
        return len(ended) == count and open_streams == 0

    await eventually(lambda: closed(1))  # the stream results_until followed
    traced.clear()
    for reads in range(7):
        call = stub.StreamResults(
            invoice_service_pb2.StreamResultsRequest(follow=True), metadata=tenant.metadata
        )
        for _ in range(reads * 20 + 1):
            await call.read()
        call.cancel()

    await eventually(lambda: closed(7))
    gc.collect()  # finalise any stream generator left suspended by the cancellation
    spans = [s for s in traced.get_finished_spans() if s.name == method]
    assert {(s.attributes or {}).get("rpc.response.status_code") for s in spans} == {"CANCELLED"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
