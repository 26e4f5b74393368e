"""Callers without a key: no database write each, no oracle on key ids, no credential logged."""

from __future__ import annotations

import logging
import secrets
import statistics
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import func, select

from clients.fbr_simulator import FbrSimulator
from fbrhub.v1 import invoice_service_pb2, invoice_service_pb2_grpc
from server.app import Hub, start_hub
from server.db.engine import Database
from server.db.models import AuditEvent, Base
from server.observability.redaction import install_credential_filter
from tests.conftest import Tenant, hub_settings

GET = invoice_service_pb2.GetInvoiceRequest(erp_reference="none")


async def _row_counts(db: Database) -> dict[str, int]:
    counts = {}
    async with db.read("test.count") as session:
        for table in Base.metadata.sorted_tables:
            count = await session.scalar(select(func.count()).select_from(table))
            counts[table.name] = int(count or 0)
    return counts


def _key(
    tenant: Tenant, secret: str | None = None, key_id: str | None = None
) -> tuple[tuple[str, str]]:
    known_id = tenant.api_key.split("_")[1]
    token = f"fbrhub_{key_id or known_id}_{secret or secrets.token_urlsafe(32)}"
    return (("authorization", f"Bearer {token}"),)


async def _code(
    stub: invoice_service_pb2_grpc.InvoiceServiceStub, metadata: object
) -> grpc.StatusCode:
    try:
        await stub.GetInvoice(GET, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_flood_of_failed_authentications_writes_only_the_aggregate(
    hub: Hub, invoices: invoice_service_pb2_grpc.InvoiceServiceStub, db: Database, tenant: Tenant
) -> None:
    before = await _row_counts(db)
    for index in range(1000):
        kind = index % 3
        metadata = (
            _key(tenant)
            if kind == 0
            else _key(tenant, key_id=secrets.token_hex(8))
            if kind == 1
            else None
        )
        assert await _code(invoices, metadata) == grpc.StatusCode.UNAUTHENTICATED
    assert await _row_counts(db) == before  # not one row per failure
    assert hub.auditor is not None and hub.auditor.pending == 1000
    written = await hub.auditor.flush()
    assert written == 3  # the known key, the unknown ones together, the keyless calls
    async with db.read("test.events") as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.failed"))
        ).all()
    counts = {(e.actor.split(":")[0], e.details["reason"]): int(e.details["count"]) for e in events}
    assert counts == {
        ("apikey", "WRONG_SECRET"): 334,
        ("apikey", "UNKNOWN_KEY"): 333,
        ("anonymous", "NO_KEY"): 333,
    }
    after = await _row_counts(db)
    changed = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    # The three events, and the chain heads of the two chains they start.
    assert changed.pop("audit_events") == 3
    assert changed in ({}, {"audit_chain_heads": 1}, {"audit_chain_heads": 2})
    # The tenant's own calls are unaffected.
    assert await _code(invoices, tenant.metadata) == grpc.StatusCode.NOT_FOUND


async def test_known_and_unknown_key_ids_cost_the_same(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    # The tenant's key was just used, so a cache would answer a wrong secret for it at once.
    assert await _code(invoices, tenant.metadata) == grpc.StatusCode.NOT_FOUND
    known: list[float] = []
    unknown: list[float] = []
    for _ in range(300):  # interleaved, so that load on the machine hits both alike
        for metadata, samples in (
            (_key(tenant), known),
            (_key(tenant, key_id=secrets.token_hex(8)), unknown),
        ):
            started = time.perf_counter()
            assert await _code(invoices, metadata) == grpc.StatusCode.UNAUTHENTICATED
            samples.append(time.perf_counter() - started)
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.9 <= ratio <= 1.1, (statistics.median(known), statistics.median(unknown))


@pytest.fixture
async def strict_hub(
    database_url: str, simulator: FbrSimulator, db: Database
) -> AsyncIterator[Hub]:
    """A hub allowing 5 failed authentications per address and window."""
    settings = hub_settings(database_url, simulator.base_url, auth_failures_per_peer=5)
    running = await start_hub(settings, db=Database(database_url))
    yield running
    await running.stop(grace=1.0)


async def test_an_address_that_keeps_failing_is_refused_without_database_work(
    strict_hub: Hub, tenant: Tenant
) -> None:
    async with grpc.aio.insecure_channel(strict_hub.address) as channel:
        stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
        # A key verified just before keeps working for its cache time.
        assert await _code(stub, tenant.metadata) == grpc.StatusCode.NOT_FOUND
        codes = [await _code(stub, _key(tenant)) for _ in range(8)]
        assert (
            codes
            == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
        )
        assert await _code(stub, None) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await _code(stub, tenant.metadata) == grpc.StatusCode.NOT_FOUND


def test_credentials_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    install_credential_filter()
    secret = secrets.token_urlsafe(32)
    token = f"fbrhub_0123456789abcdef_{secret}"
    caplog.set_level(logging.DEBUG)
    grpc_logger = logging.getLogger("grpc._cython.cygrpc")
    try:
        (b"Bearer " + token.encode() + b"\xff").decode()
    except UnicodeDecodeError:
        grpc_logger.exception("Invalid encoding on %s", b"Bearer " + token.encode() + b"\xff")
    logging.getLogger("grpc._server").error("metadata was %s", f"authorization: Bearer {token}")
    logging.getLogger("grpc").warning("a key: %s", token)
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert secret not in text
    assert "Invalid encoding on a metadata value" in text
    assert "fbrhub_0123456789abcdef_[REDACTED]" in text
