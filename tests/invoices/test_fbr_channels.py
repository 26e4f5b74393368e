"""Speaking FBR exactly through the hub: POS channel, debit notes, print data, scenarios,
reference data, end to end over real gRPC, databases and the simulator."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
import zxingcpp

from clients.fbr_simulator import FbrSimulator
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.app import Hub, start_hub
from server.db.engine import Database
from server.invoices.reference_data import ReferenceStore
from tests.conftest import SELLER_NTN, SELLER_TOKEN, Tenant, hub_settings
from tests.helpers import (
    png_pixels,
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
async def pos_hub(database_url: str, simulator: FbrSimulator) -> AsyncIterator[Hub]:
    """A hub whose POS channel goes to the simulator too."""
    settings = hub_settings(database_url, simulator.base_url, fbr_pos_base_url=simulator.base_url)
    running = await start_hub(settings, db=Database(database_url))
    yield running
    await running.stop(grace=1.0)


@pytest.fixture
async def stub(pos_hub: Hub) -> AsyncIterator[Stub]:
    """A stub on the POS-capable hub."""
    async with grpc.aio.insecure_channel(pos_hub.address) as channel:
        yield invoice_service_pb2_grpc.InvoiceServiceStub(channel)


def pos_invoice(usin: str, lines: int = 2) -> invoice_pb2.Invoice:
    """A POS invoice with consistent arithmetic (tax 18%, totals = value + tax)."""
    items = []
    for n in range(lines):
        value = 1000 + 250 * n
        tax = value * 18 / 100
        items.append(
            invoice_pb2.PosItem(
                item_code=f"SKU-{n}",
                item_name=f"Item {n}",
                pct_code="84145100",
                quantity="1",
                tax_rate="18",
                sale_value=f"{value:.2f}",
                tax_charged=f"{tax:.2f}",
                total_amount=f"{value + tax:.2f}",
                item_type=invoice_pb2.POS_ITEM_TYPE_NEW,
            )
        )
    return invoice_pb2.Invoice(
        erp_reference=usin,
        pos=invoice_pb2.PosInvoice(
            date_time=f"{today_pk() - dt.timedelta(days=1)} 12:00:00",
            payment_mode=invoice_pb2.PAYMENT_MODE_CARD,
            invoice_type=invoice_pb2.POS_INVOICE_TYPE_NEW,
            items=items,
        ),
    )


async def test_a_pos_tenant_gets_fiscal_numbers_through_the_same_rpcs(
    stub: Stub, simulator: FbrSimulator, db: Database
) -> None:
    from server.access.api_keys import create_api_key
    from server.access.tenants import create_tenant

    tenant_id = await create_tenant(
        db,
        seller_ntn_cnic=SELLER_NTN,
        business_name="Retail Store",
        province="PUNJAB",
        address="Mall Road",
        fbr_environment="sandbox",
        fbr_token=SELLER_TOKEN,
        channel="pos",
        pos_id="123456",
    )
    _, key = await create_api_key(db, tenant_id)
    retailer = Tenant(tenant_id, key, SELLER_NTN)
    bad = pos_invoice("USIN-bad")
    bad.pos.items[0].pct_code = "8414.51"
    (response,) = await submit(
        stub, retailer, [pos_invoice(f"USIN-{i}") for i in range(4)] + [bad, proto_invoice("DI-1")]
    )
    outcomes = [a.outcome for a in response.acks]
    assert outcomes[:4] == [invoice_service_pb2.ACK_OUTCOME_ACCEPTED] * 4
    assert outcomes[4:] == [invoice_service_pb2.ACK_OUTCOME_REJECTED] * 2
    assert "invoices[4].pos.items[0].pct_code" in {
        v.field for v in violations(response.acks[4].error)
    }
    assert "invoices[5].pos" in {v.field for v in violations(response.acks[5].error)}
    events = await results_until(stub, retailer, 4)
    assert all(e.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED for e in events)
    assert all(e.event.fbr_invoice_number.isdigit() for e in events)
    got = await stub.GetInvoice(
        invoice_service_pb2.GetInvoiceRequest(erp_reference="USIN-0"), metadata=retailer.metadata
    )
    assert got.invoice.channel == invoice_pb2.FBR_CHANNEL_POS
    assert got.invoice.invoice.pos.payment_mode == invoice_pb2.PAYMENT_MODE_CARD
    printed = await stub.GetPrintData(
        invoice_service_pb2.GetPrintDataRequest(erp_reference="USIN-0"), metadata=retailer.metadata
    )
    assert printed.pos_service_fee == "1.00"
    assert printed.fbr_invoice_number == got.invoice.fbr_invoice_number
    assert [simulator.pos.usin_count("123456", f"USIN-{i}") for i in range(4)] == [1] * 4
    assert simulator.pos.reused_usins() == {}


async def test_print_data_qr_decodes_to_the_fbr_number(stub: Stub, tenant: Tenant) -> None:
    (response,) = await submit(stub, tenant, [proto_invoice("PRINT-1")])
    invoice_id = response.acks[0].invoice_id
    with pytest.raises(grpc.aio.AioRpcError) as early:
        # Not accepted yet or just accepted: either way the answer is well-formed.
        await stub.GetPrintData(
            invoice_service_pb2.GetPrintDataRequest(erp_reference="NOT-THERE"),
            metadata=tenant.metadata,
        )
    assert early.value.code() == grpc.StatusCode.NOT_FOUND
    (event,) = await results_until(stub, tenant, 1)
    printed = await stub.GetPrintData(
        invoice_service_pb2.GetPrintDataRequest(invoice_id=invoice_id), metadata=tenant.metadata
    )
    assert printed.fbr_invoice_number == event.event.fbr_invoice_number
    assert printed.qr_version == 2 and printed.qr_svg.startswith(b"<svg")
    width, height, pixels = png_pixels(printed.qr_png)
    found = zxingcpp.read_barcode(
        zxingcpp.ImageView(pixels, width, height, zxingcpp.ImageFormat.Lum),
        formats=zxingcpp.BarcodeFormat.QRCode,
    )
    assert found is not None and found.text == printed.fbr_invoice_number


async def test_print_data_needs_an_accepted_invoice(
    database_url: str, simulator: FbrSimulator, tenant: Tenant
) -> None:
    settings = hub_settings(database_url, simulator.base_url, forwarder_enabled=False)
    hub = await start_hub(settings, db=Database(database_url))
    try:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = invoice_service_pb2_grpc.InvoiceServiceStub(channel)
            await submit(stub, tenant, [proto_invoice("QUEUED-1")])
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetPrintData(
                    invoice_service_pb2.GetPrintDataRequest(erp_reference="QUEUED-1"),
                    metadata=tenant.metadata,
                )
    finally:
        await hub.stop(grace=1.0)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_debit_note_links_to_its_original_both_ways(stub: Stub, tenant: Tenant) -> None:
    (first,) = await submit(stub, tenant, [proto_invoice("ORIG-1")])
    (accepted,) = await results_until(stub, tenant, 1)
    note = sample("NOTE-1")
    note["invoice_type"] = "Debit Note"
    note["invoice_ref_no"] = accepted.event.fbr_invoice_number
    unknown = sample("NOTE-2")
    unknown["invoice_type"] = "Debit Note"
    unknown["invoice_ref_no"] = f"{tenant.ntn}DI1234567890123"
    (second,) = await submit(stub, tenant, [to_proto(note), to_proto(unknown)])
    assert second.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED
    assert second.acks[1].outcome == invoice_service_pb2.ACK_OUTCOME_REJECTED
    assert ("invoices[1].invoice_ref_no", "FBR_0057") in {
        (v.field, v.reason) for v in violations(second.acks[1].error)
    }
    (note_event,) = await results_until(stub, tenant, 1, cursor=accepted.cursor)
    assert note_event.event.kind == invoice_pb2.RESULT_KIND_ACCEPTED
    original = await stub.GetInvoice(
        invoice_service_pb2.GetInvoiceRequest(invoice_id=first.acks[0].invoice_id),
        metadata=tenant.metadata,
    )
    debit = await stub.GetInvoice(
        invoice_service_pb2.GetInvoiceRequest(invoice_id=second.acks[0].invoice_id),
        metadata=tenant.metadata,
    )
    assert list(original.invoice.debit_note_ids) == [second.acks[0].invoice_id]
    assert debit.invoice.original_invoice_id == first.acks[0].invoice_id


async def test_a_scenario_not_assigned_to_the_seller_is_refused_locally(
    stub: Stub, db: Database
) -> None:
    from server.access.api_keys import create_api_key
    from server.access.tenants import create_tenant

    tenant_id = await create_tenant(
        db,
        seller_ntn_cnic=SELLER_NTN,
        business_name="Services Co",
        province="SINDH",
        address="Karachi",
        fbr_environment="sandbox",
        fbr_token=SELLER_TOKEN,
        assigned_scenarios=["SN001"],
    )
    _, key = await create_api_key(db, tenant_id)
    seller = Tenant(tenant_id, key, SELLER_NTN)
    (response,) = await submit(
        stub,
        seller,
        [proto_invoice("SCN-1", scenario="SN001"), proto_invoice("SCN-2", scenario="SN002")],
    )
    assert response.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED
    assert ("invoices[1].scenario_id", "FBR_0203") in {
        (v.field, v.reason) for v in violations(response.acks[1].error)
    }


async def test_refdata_sync_stores_a_snapshot_the_hub_then_uses(
    database_url: str, simulator: FbrSimulator, db: Database, tenant: Tenant
) -> None:
    import asyncio

    env = {
        **os.environ,
        "FBRHUB_DATABASE_URL": database_url,
        "FBRHUB_FBR_BASE_URL": simulator.base_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.commands", "refdata", "sync", "--tenant", str(tenant.id),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "stored FBR reference snapshot" in out.decode()
    store = ReferenceStore(db)
    assert await store.refresh()
    assert store.snapshot_id is not None
    assert "PUNJAB" in {p.upper() for p in store.current().province_names()}
    assert not await store.refresh()  # nothing newer
