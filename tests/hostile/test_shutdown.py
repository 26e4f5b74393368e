"""A stop with followers connected takes what in-flight work needs, not the whole grace."""

from __future__ import annotations

import asyncio
import time

import grpc

from clients.fbr_simulator import FbrSimulator
from fbrhub.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    invoice_service_pb2,
    invoice_service_pb2_grpc,
)
from server.app import start_hub
from server.db.engine import Database
from tests.conftest import RoleKeys, hub_settings


async def test_followers_end_cleanly_at_the_start_of_shutdown(
    database_url: str, simulator: FbrSimulator, role_keys: RoleKeys
) -> None:
    settings = hub_settings(database_url, simulator.base_url, shutdown_grace_seconds=10.0)
    hub = await start_hub(settings, db=Database(database_url))
    channel = grpc.aio.insecure_channel(hub.address)
    results = invoice_service_pb2_grpc.InvoiceServiceStub(channel).StreamResults(
        invoice_service_pb2.StreamResultsRequest(follow=True), metadata=role_keys.metadata("erp")
    )
    audit = audit_service_pb2_grpc.AuditServiceStub(channel).StreamAuditEvents(
        audit_service_pb2.StreamAuditEventsRequest(follow=True),
        metadata=role_keys.metadata("auditor"),
    )
    first = await results.read()  # following: the caught-up heartbeat has arrived
    assert first.HasField("heartbeat_time")

    async def drain(call: grpc.aio.UnaryStreamCall) -> grpc.StatusCode:  # type: ignore[type-arg]
        while await call.read() is not grpc.aio.EOF:
            pass
        return await call.code()

    followers = [asyncio.create_task(drain(results)), asyncio.create_task(drain(audit))]
    await asyncio.sleep(0)  # both are reading
    started = time.perf_counter()
    await hub.stop()
    took = time.perf_counter() - started
    codes = await asyncio.gather(*followers)
    await channel.close()
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.OK]  # a clean end, not UNAVAILABLE
    assert took < 3.0, took  # not the 10 s grace
