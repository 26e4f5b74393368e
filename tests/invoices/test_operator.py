"""Operator decisions: resolving in-doubt invoices and retrying FBR rejections."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest

from clients.fbr_simulator import Fault, FbrSimulator, TokenGrant
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.app import Hub, start_hub
from server.db.engine import Database
from tests.conftest import SELLER_NTN, SELLER_TOKEN, Tenant, hub_settings
from tests.helpers import (
    proto_invoice,
    results_until,
    sample,
    submit,
    to_proto,
    today_pk,
    violations,
)

Stub = invoice_service_pb2_grpc.InvoiceServiceStub


@pytest.fixture
async def quick_hub(database_url: str, simulator: FbrSimulator) -> AsyncIterator[Hub]:
    """A hub that gives up on a hanging FBR after half a second."""
    settings = hub_settings(database_url, simulator.base_url, fbr_read_timeout_seconds=0.5)
    running = await start_hub(settings, db=Database(database_url))
    yield running
    await running.stop(grace=1.0)


@pytest.fixture
async def stub(quick_hub: Hub) -> AsyncIterator[Stub]:
    """A stub on the quick hub."""
    async with grpc.aio.insecure_channel(quick_hub.address) as channel:
        yield invoice_service_pb2_grpc.InvoiceServiceStub(channel)


async def _resolve(stub: Stub, tenant: Tenant, **kwargs: object) -> invoice_pb2.InvoiceRecord:
    response = await stub.ResolveInvoice(
        invoice_service_pb2.ResolveInvoiceRequest(**kwargs),  # type: ignore[arg-type]
        metadata=tenant.metadata,
    )
    return response.invoice


async def test_in_doubt_invoice_is_marked_issued_with_fbrs_number(
    stub: Stub, simulator: FbrSimulator, tenant: Tenant, other_tenant: Tenant
) -> None:
    simulator.script(Fault.ACCEPT_THEN_HANG)
    (response,) = await submit(stub, tenant, [proto_invoice("OP-1")])
    invoice_id = response.acks[0].invoice_id
    (doubt,) = await results_until(stub, tenant, 1)
    assert doubt.event.kind == invoice_pb2.RESULT_KIND_IN_DOUBT
    # The operator looks the invoice up at FBR and finds the number FBR issued.
    (issued,) = [n for n in simulator.issued if n.key == invoice_id]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _resolve(
            stub,
            tenant,
            invoice_id=invoice_id,
            mark_issued=invoice_service_pb2.IssuedFbrNumber(fbr_invoice_number="1234567DI1"),
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await _resolve(stub, other_tenant, invoice_id=invoice_id, release_for_resend=True)
    assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
    record = await _resolve(
        stub,
        tenant,
        invoice_id=invoice_id,
        mark_issued=invoice_service_pb2.IssuedFbrNumber(
            fbr_invoice_number=issued.invoice_number, fbr_dated=issued.dated
        ),
        note="found in IRIS",
    )
    assert record.state == invoice_pb2.INVOICE_STATE_ACCEPTED
    assert record.fbr_invoice_number == issued.invoice_number
    assert [a.outcome for a in record.attempts] == [
        invoice_pb2.ATTEMPT_OUTCOME_IN_DOUBT,
        invoice_pb2.ATTEMPT_OUTCOME_OPERATOR_DECISION,
    ]
    (event,) = await results_until(stub, tenant, 1, cursor=doubt.cursor)
    assert event.event.kind == invoice_pb2.RESULT_KIND_RESOLVED_ISSUED
    assert event.event.fbr_invoice_number == issued.invoice_number
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await _resolve(stub, tenant, invoice_id=invoice_id, release_for_resend=True)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert simulator.issued_count(invoice_id) == 1


async def test_released_invoice_is_sent_again_and_accepted_once(
    stub: Stub, simulator: FbrSimulator, tenant: Tenant
) -> None:
    simulator.script(Fault.HTTP_500_PLAIN)  # ambiguous to the hub; FBR issued nothing
    (response,) = await submit(stub, tenant, [proto_invoice("OP-2")])
    invoice_id = response.acks[0].invoice_id
    (doubt,) = await results_until(stub, tenant, 1)
    assert doubt.event.kind == invoice_pb2.RESULT_KIND_IN_DOUBT
    assert simulator.issued_count(invoice_id) == 0
    record = await _resolve(stub, tenant, invoice_id=invoice_id, release_for_resend=True)
    assert record.state in (invoice_pb2.INVOICE_STATE_QUEUED, invoice_pb2.INVOICE_STATE_SENDING)
    requeued, accepted = await results_until(stub, tenant, 2, cursor=doubt.cursor)
    assert requeued.event.kind == invoice_pb2.RESULT_KIND_REQUEUED
    assert accepted.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED
    assert simulator.issued_count(invoice_id) == 1


async def test_resolution_must_say_what_was_found(stub: Stub, tenant: Tenant) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _resolve(stub, tenant, invoice_id="not-a-uuid")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def lagging_simulator() -> AsyncIterator[FbrSimulator]:
    """An FBR whose calendar is two days behind: yesterday's invoices are 'in the future'."""
    sim = FbrSimulator(
        tokens={SELLER_TOKEN: TokenGrant(SELLER_NTN, "sandbox")},
        clock=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
    )
    await sim.start()
    yield sim
    await sim.stop()


async def test_rejected_invoice_is_retried_after_correction(
    database_url: str, lagging_simulator: FbrSimulator, tenant: Tenant, other_tenant: Tenant
) -> None:
    settings = hub_settings(database_url, lagging_simulator.base_url)
    hub = await start_hub(settings, db=Database(database_url))
    try:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
            (response,) = await submit(stub, tenant, [proto_invoice("OP-3")])
            invoice_id = response.acks[0].invoice_id
            (rejected,) = await results_until(stub, tenant, 1)
            assert rejected.event.kind == invoice_pb2.RESULT_KIND_REJECTED
            assert ("invoice_date", "FBR_0043") in {
                (v.field, v.reason) for v in violations(rejected.event.error)
            }
            corrected = sample("OP-3")
            corrected["invoice_date"] = (today_pk() - dt.timedelta(days=4)).isoformat()
            broken = dict(corrected, items=[dict(corrected["items"][0], hs_code="12")])
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await stub.RetryInvoice(
                    invoice_service_pb2.RetryInvoiceRequest(
                        invoice_id=invoice_id, corrected_invoice=to_proto(broken)
                    ),
                    metadata=tenant.metadata,
                )
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as foreign:
                await stub.RetryInvoice(
                    invoice_service_pb2.RetryInvoiceRequest(invoice_id=invoice_id),
                    metadata=other_tenant.metadata,
                )
            assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
            retried = await stub.RetryInvoice(
                invoice_service_pb2.RetryInvoiceRequest(
                    invoice_id=invoice_id, corrected_invoice=to_proto(corrected), note="date fixed"
                ),
                metadata=tenant.metadata,
            )
            assert retried.invoice.invoice.invoice_date == corrected["invoice_date"]
            requeued, accepted = await results_until(stub, tenant, 2, cursor=rejected.cursor)
            assert requeued.event.kind == invoice_pb2.RESULT_KIND_REQUEUED
            assert accepted.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED
            with pytest.raises(grpc.aio.AioRpcError) as accepted_already:
                await stub.RetryInvoice(
                    invoice_service_pb2.RetryInvoiceRequest(invoice_id=invoice_id),
                    metadata=tenant.metadata,
                )
            assert accepted_already.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # The corrected content is now the reference's content: resending it is a duplicate.
            (again,) = await submit(stub, tenant, [to_proto(corrected)])
            assert again.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_DUPLICATE
    finally:
        await hub.stop(grace=1.0)
    assert lagging_simulator.issued_count(invoice_id) == 1
