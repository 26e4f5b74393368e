"""The invoice path end to end: ERP stream -> validate -> store -> FBR -> results stream.

Real in-process gRPC hub, real databases (SQLite and PostgreSQL), the FBR simulator over
real HTTP. Nothing of our own is mocked.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from clients.fbr_simulator import FbrSimulator
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.db.engine import Database
from tests.conftest import Tenant
from tests.helpers import (
    FBR_NUMBER,
    error_reason,
    proto_invoice,
    results_until,
    sample,
    submit,
    to_proto,
    violations,
)


async def test_ack_is_sent_only_after_commit(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, database_url: str
) -> None:
    # A separate engine sees only committed data: every acked invoice must already be there
    # at the moment its ack arrives.
    observer = create_async_engine(database_url)
    batches = [[proto_invoice(f"INV-{b}-{i}") for i in range(50)] for b in range(4)]

    async def requests() -> AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest]:
        for batch in batches:
            yield invoice_service_pb2.SubmitInvoicesRequest(invoices=batch)

    seen = 0
    try:
        async for response in invoices.SubmitInvoices(requests(), metadata=tenant.metadata):
            ids = [uuid.UUID(a.invoice_id) for a in response.acks]
            assert all(a.outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED for a in response.acks)
            async with observer.connect() as connection:
                stored = await connection.scalar(
                    sa.text("select count(*) from invoices where tenant_id = :t").bindparams(
                        t=tenant.id if "postgresql" in database_url else tenant.id.hex
                    )
                )
            seen += len(ids)
            assert stored is not None and stored >= seen
    finally:
        await observer.dispose()
    assert seen == 200


async def test_every_ack_comes_in_request_order(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    batch = [proto_invoice(f"ORD-{i}") for i in range(30)]
    (response,) = await submit(invoices, tenant, batch)
    assert [a.index for a in response.acks] == list(range(30))
    assert [a.erp_reference for a in response.acks] == [f"ORD-{i}" for i in range(30)]
    assert all(a.state == invoice_pb2.INVOICE_STATE_QUEUED for a in response.acks)


async def test_duplicate_reference_returns_the_original(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    original = proto_invoice("DUP-1")
    (first,) = await submit(invoices, tenant, [original])
    (second,) = await submit(invoices, tenant, [original, original])
    original_id = first.acks[0].invoice_id
    assert first.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED
    for ack in second.acks:
        assert ack.outcome == invoice_service_pb2.ACK_OUTCOME_DUPLICATE
        assert ack.invoice_id == original_id
        assert ack.state != invoice_pb2.INVOICE_STATE_UNSPECIFIED


async def test_same_reference_with_other_content_is_refused(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    (first,) = await submit(invoices, tenant, [proto_invoice("REUSE-1", seed=1)])
    (second,) = await submit(invoices, tenant, [proto_invoice("REUSE-1", seed=2)])
    ack = second.acks[0]
    assert ack.outcome == invoice_service_pb2.ACK_OUTCOME_REJECTED
    assert error_reason(ack.error) == "ERP_REFERENCE_REUSED"
    assert [v.field for v in violations(ack.error)] == ["invoices[0].erp_reference"]
    assert ack.invoice_id == first.acks[0].invoice_id


async def test_invalid_invoices_get_field_paths_and_valid_ones_go_through(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    bad_hs = sample("MIX-1")
    bad_hs["items"][0]["hs_code"] = "12345678"
    bad_province = sample("MIX-3")
    bad_province["buyer_province"] = "Lahore"
    batch = [
        proto_invoice("MIX-0"),
        to_proto(bad_hs),
        proto_invoice("MIX-2"),
        to_proto(bad_province),
    ]
    (response,) = await submit(invoices, tenant, batch)
    outcomes = [a.outcome for a in response.acks]
    assert outcomes == [
        invoice_service_pb2.ACK_OUTCOME_ACCEPTED,
        invoice_service_pb2.ACK_OUTCOME_REJECTED,
        invoice_service_pb2.ACK_OUTCOME_ACCEPTED,
        invoice_service_pb2.ACK_OUTCOME_REJECTED,
    ]
    hs = {(v.field, v.reason) for v in violations(response.acks[1].error)}
    assert ("invoices[1].items[0].hs_code", "FBR_0019") in hs
    province = {(v.field, v.reason) for v in violations(response.acks[3].error)}
    assert ("invoices[3].buyer_province", "FBR_0074") in province
    assert response.acks[1].state == invoice_pb2.INVOICE_STATE_REJECTED_LOCAL
    # The stream carries on after the bad invoices.
    (later,) = await submit(invoices, tenant, [proto_invoice("MIX-4")])
    assert later.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED


async def test_corrected_invoice_can_reuse_a_locally_rejected_reference(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    broken = sample("FIX-1")
    broken["items"][0]["hs_code"] = "bad"
    (first,) = await submit(invoices, tenant, [to_proto(broken)])
    (second,) = await submit(invoices, tenant, [proto_invoice("FIX-1")])
    assert first.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_REJECTED
    assert second.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED
    assert second.acks[0].invoice_id == first.acks[0].invoice_id


async def test_accepted_invoices_get_fbr_numbers_on_the_results_stream(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    (response,) = await submit(invoices, tenant, [proto_invoice(f"OK-{i}") for i in range(5)])
    events = await results_until(invoices, tenant, 5)
    assert {e.event.erp_reference for e in events} == {f"OK-{i}" for i in range(5)}
    for message in events:
        assert message.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED
        assert FBR_NUMBER.match(message.event.fbr_invoice_number)
        assert message.event.fbr_invoice_number.startswith(tenant.ntn)
    got = await invoices.GetInvoice(
        invoice_service_pb2.GetInvoiceRequest(invoice_id=response.acks[0].invoice_id),
        metadata=tenant.metadata,
    )
    record = got.invoice
    assert record.state == invoice_pb2.INVOICE_STATE_ACCEPTED
    assert FBR_NUMBER.match(record.fbr_invoice_number)
    assert record.fbr_dated
    assert [s.status_code for s in record.item_statuses] == ["00"] * len(record.invoice.items)
    assert [a.outcome for a in record.attempts] == [invoice_pb2.ATTEMPT_OUTCOME_ACCEPTED]
    assert record.invoice.erp_reference == "OK-0"


async def test_results_stream_resumes_exactly_from_a_cursor(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    await submit(invoices, tenant, [proto_invoice(f"CUR-{i}") for i in range(6)])
    first = await results_until(invoices, tenant, 6)
    # Reconnect after the third event: exactly the last three, in the same order.
    resumed = await results_until(invoices, tenant, 3, cursor=first[2].cursor)
    assert [m.event.invoice_id for m in resumed] == [m.event.invoice_id for m in first[3:]]
    # A follower resuming from the end sees only what happens afterwards, once.
    await submit(invoices, tenant, [proto_invoice("CUR-late")])
    late = await results_until(invoices, tenant, 1, cursor=first[-1].cursor)
    assert [m.event.erp_reference for m in late] == ["CUR-late"]
    # Without follow, the stream ends after the backlog.
    call = invoices.StreamResults(
        invoice_service_pb2.StreamResultsRequest(cursor=first[-1].cursor),
        metadata=tenant.metadata,
    )
    assert [m.event.erp_reference async for m in call] == ["CUR-late"]


async def test_a_cursor_of_another_tenant_is_refused(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, other_tenant: Tenant
) -> None:
    await submit(invoices, tenant, [proto_invoice("X-1")])
    (event,) = await results_until(invoices, tenant, 1)
    call = invoices.StreamResults(
        invoice_service_pb2.StreamResultsRequest(cursor=event.cursor),
        metadata=other_tenant.metadata,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [m async for m in call]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_validate_is_a_dry_run(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    bad = sample("DRY-1")
    bad["invoice_date"] = "2025-13-45"
    response = await invoices.ValidateInvoices(
        invoice_service_pb2.ValidateInvoicesRequest(
            invoices=[proto_invoice("DRY-0"), to_proto(bad)]
        ),
        metadata=tenant.metadata,
    )
    assert [r.valid for r in response.results] == [True, False]
    assert "invoices[1].invoice_date" in {v.field for v in violations(response.results[1].error)}
    listed = await invoices.ListInvoices(
        invoice_service_pb2.ListInvoicesRequest(), metadata=tenant.metadata
    )
    assert list(listed.invoices) == []


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer fbrhub_nope_wrong"),), (("authorization", "Basic abc"),)],
)
async def test_missing_or_wrong_api_key_is_unauthenticated(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    tenant: Tenant,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await invoices.ListInvoices(invoice_service_pb2.ListInvoicesRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    call = invoices.SubmitInvoices(
        iter([invoice_service_pb2.SubmitInvoicesRequest(invoices=[proto_invoice("A-1")])]),
        metadata=metadata,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [r async for r in call]
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_tampered_secret_is_unauthenticated(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    forged = tenant.api_key[:-2] + ("AA" if not tenant.api_key.endswith("AA") else "BB")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await invoices.ListInvoices(
            invoice_service_pb2.ListInvoicesRequest(),
            metadata=(("authorization", f"Bearer {forged}"),),
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_one_tenant_cannot_read_another_tenants_invoice(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, other_tenant: Tenant
) -> None:
    (response,) = await submit(invoices, tenant, [proto_invoice("MINE-1")])
    invoice_id = response.acks[0].invoice_id
    for request in (
        invoice_service_pb2.GetInvoiceRequest(invoice_id=invoice_id),
        invoice_service_pb2.GetInvoiceRequest(erp_reference="MINE-1"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await invoices.GetInvoice(request, metadata=other_tenant.metadata)
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await invoices.GetInvoice(
            invoice_service_pb2.GetInvoiceRequest(invoice_id=str(uuid.uuid4())),
            metadata=other_tenant.metadata,
        )
    # Indistinguishable from an invoice that does not exist.
    assert foreign.value.details() == missing.value.details()
    assert foreign.value.trailing_metadata() == missing.value.trailing_metadata()
    listed = await invoices.ListInvoices(
        invoice_service_pb2.ListInvoicesRequest(), metadata=other_tenant.metadata
    )
    assert list(listed.invoices) == []


async def test_list_invoices_pages_and_filters(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    bad = sample("LIST-bad")
    bad["items"][0]["uom"] = "kilos"
    await submit(invoices, tenant, [proto_invoice(f"LIST-{i}") for i in range(7)] + [to_proto(bad)])
    seen: list[str] = []
    token = ""
    while True:
        page = await invoices.ListInvoices(
            invoice_service_pb2.ListInvoicesRequest(page_size=3, page_token=token),
            metadata=tenant.metadata,
        )
        seen.extend(r.erp_reference for r in page.invoices)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted([f"LIST-{i}" for i in range(7)] + ["LIST-bad"])
    assert len(seen) == len(set(seen))
    rejected = await invoices.ListInvoices(
        invoice_service_pb2.ListInvoicesRequest(states=[invoice_pb2.INVOICE_STATE_REJECTED_LOCAL]),
        metadata=tenant.metadata,
    )
    assert [r.erp_reference for r in rejected.invoices] == ["LIST-bad"]
    assert {v.field for v in violations(rejected.invoices[0].error)} >= {"items[0].uom"}
    with pytest.raises(grpc.aio.AioRpcError) as changed:
        first = await invoices.ListInvoices(
            invoice_service_pb2.ListInvoicesRequest(page_size=2), metadata=tenant.metadata
        )
        await invoices.ListInvoices(
            invoice_service_pb2.ListInvoicesRequest(
                page_size=2, page_token=first.next_page_token, invoice_date_from="2020-01-01"
            ),
            metadata=tenant.metadata,
        )
    assert changed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_oversized_batch_ends_the_stream_with_invalid_argument(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    batch = [proto_invoice(f"BIG-{i}") for i in range(501)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await submit(invoices, tenant, batch)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stored_invoices_survive_a_new_hub_process(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, database_url: str
) -> None:
    (response,) = await submit(invoices, tenant, [proto_invoice("KEEP-1")])
    fresh = Database(database_url)
    try:
        async with fresh.read() as session:
            count = await session.scalar(sa.text("select count(*) from invoices"))
    finally:
        await fresh.dispose()
    assert count == 1
    assert response.acks[0].invoice_id


async def test_an_oversized_message_is_refused_cleanly_and_the_server_lives_on(
    database_url: str, simulator: FbrSimulator, tenant: Tenant
) -> None:
    from server.app import start_hub
    from tests.conftest import hub_settings

    settings = hub_settings(database_url, simulator.base_url, grpc_max_message_bytes=64 * 1024)
    hub = await start_hub(settings, db=Database(database_url))
    try:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
            huge = proto_invoice("HUGE-1")
            huge.items[0].product_description = "x" * (128 * 1024)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ValidateInvoices(
                    invoice_service_pb2.ValidateInvoicesRequest(invoices=[huge]),
                    metadata=tenant.metadata,
                )
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "x" * 100 not in (caught.value.details() or "")
            # The same server goes on serving normal requests.
            ok = await stub.ValidateInvoices(
                invoice_service_pb2.ValidateInvoicesRequest(invoices=[proto_invoice("SMALL-1")]),
                metadata=tenant.metadata,
            )
            assert [r.valid for r in ok.results] == [True]
    finally:
        await hub.stop(grace=1.0)


async def test_requests_before_an_oversized_one_are_all_acked(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant, db: Database
) -> None:
    batches = [[proto_invoice(f"PRE-{b}-{i}") for i in range(20)] for b in range(4)]
    batches.append([proto_invoice(f"BIG2-{i}") for i in range(501)])

    async def requests() -> AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest]:
        for batch in batches:
            yield invoice_service_pb2.SubmitInvoicesRequest(invoices=batch)

    call = invoices.SubmitInvoices(requests(), metadata=tenant.metadata)
    acked: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for response in call:
            acked.extend(a.erp_reference for a in response.acks)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Every request before the bad one was stored and acked; the bad one stored nothing.
    assert sorted(acked) == sorted(i.erp_reference for b in batches[:4] for i in b)
    async with db.read() as session:
        stored = await session.scalar(sa.text("select count(*) from invoices"))
    assert stored == 80


async def test_overlong_fields_and_too_many_lines_are_refused_by_name(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, tenant: Tenant
) -> None:
    long_text = sample("LONG-1")
    long_text["buyer_address"] = "Street " * 200
    many = sample("MANY-1")
    many["items"] = many["items"][:1] * 1001
    response = await invoices.ValidateInvoices(
        invoice_service_pb2.ValidateInvoicesRequest(invoices=[to_proto(long_text), to_proto(many)]),
        metadata=tenant.metadata,
    )
    assert [r.valid for r in response.results] == [False, False]
    assert "invoices[0].buyer_address" in {v.field for v in violations(response.results[0].error)}
    assert "invoices[1].items" in {v.field for v in violations(response.results[1].error)}
    assert "Street" not in response.results[0].error.message
