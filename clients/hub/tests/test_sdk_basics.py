"""Both clients against a real hub: submit, results, submit-and-wait, lookups, conversions."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from hubprocess import HubProcess, make_invoice

from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk import (
    AsyncHubClient,
    HubClient,
    MemoryCursorStore,
    describe_status,
    invoice_from_fbr_json,
)

ACCEPTED = invoice_service_pb2.ACK_OUTCOME_ACCEPTED
REJECTED = invoice_service_pb2.ACK_OUTCOME_REJECTED


def test_sync_submit_reads_the_invoices_in_the_callers_thread(shared_hub: HubProcess) -> None:
    threads: set[int] = set()

    def invoices() -> Iterator[invoice_pb2.Invoice]:
        for n in range(25):
            threads.add(threading.get_ident())
            yield make_invoice(f"SYNC-{n:03d}")
        threads.add(threading.get_ident())
        yield make_invoice("SYNC-BAD", hs_code="85164000")

    with HubClient(shared_hub.address, shared_hub.api_key) as hub:
        acks = list(hub.submit(invoices(), batch_size=10, max_in_flight_batches=2))
    assert threads == {threading.get_ident()}
    assert [a.erp_reference for a in acks] == [f"SYNC-{n:03d}" for n in range(25)] + ["SYNC-BAD"]
    assert [a.outcome for a in acks[:-1]] == [ACCEPTED] * 25
    assert acks[-1].outcome == REJECTED
    violation = describe_status(acks[-1].error)[0]
    assert (violation.fbr_error_code, violation.field) == ("0019", "invoices[5].items[0].hs_code")


async def test_async_submit_then_results_until_every_outcome(shared_hub: HubProcess) -> None:
    references = [f"ASYNC-{n:03d}" for n in range(12)]

    async def invoices() -> AsyncIterator[invoice_pb2.Invoice]:
        for reference in references:
            yield make_invoice(reference)

    store = MemoryCursorStore()
    async with AsyncHubClient(shared_hub.address, shared_hub.api_key) as hub:
        acks = [ack async for ack in hub.submit(invoices(), batch_size=5)]
        assert [a.outcome for a in acks] == [ACCEPTED] * len(references)
        ours = {a.invoice_id for a in acks}
        seen: dict[str, int] = {}
        async for message in hub.results(store, outcomes_only=True):
            if message.event.invoice_id in ours:
                seen[message.event.invoice_id] = message.event.kind
            if len(seen) == len(ours):
                break
    assert set(seen.values()) == {invoice_pb2.RESULT_KIND_ACCEPTED}
    assert store.load()  # the cursor of the last handled event was kept


def test_submit_and_wait_settles_each_invoice(shared_hub: HubProcess) -> None:
    batch = [make_invoice("WAIT-1"), make_invoice("WAIT-2", hs_code="0"), make_invoice("WAIT-3")]
    with HubClient(shared_hub.address, shared_hub.api_key) as hub:
        outcomes = hub.submit_and_wait(batch, timeout=30)
    assert [o.erp_reference for o in outcomes] == ["WAIT-1", "WAIT-2", "WAIT-3"]
    assert all(o.settled for o in outcomes)
    assert [o.accepted for o in outcomes] == [True, False, True]
    assert outcomes[0].fbr_invoice_number.startswith(f"{'8885801'}DI")
    assert any(v.fbr_error_code == "0019" for v in outcomes[1].violations)


def test_an_fbr_json_body_goes_through_unchanged(shared_hub: HubProcess) -> None:
    reference = make_invoice("FBR-JSON-1")
    body = {
        "invoiceType": "Sale Invoice",
        "invoiceDate": reference.invoice_date,
        "sellerNTNCNIC": "8885801",  # FBR's own field: accepted, ignored (the tenant's is used)
        "buyerNTNCNIC": "2046004",
        "buyerBusinessName": "Buyer Ltd",
        "buyerProvince": "SINDH",
        "buyerAddress": "Karachi",
        "buyerRegistrationType ": "Registered",  # a stray space, as in FBR's own sample
        "scenarioId": "SN001",
        "items": [
            {
                "hsCode": "8516.4000",
                "productDescription": "Electric steam iron",
                "rate": "18%",
                "uoM": "Numbers, pieces, units",
                "quantity": 2,
                "totalValues": 10620.0,
                "valueSalesExcludingST": 9000,
                "salesTaxApplicable": 1620.00,
                "saleType": "Goods at standard rate (default)",
            }
        ],
    }
    invoice = invoice_from_fbr_json(body, "FBR-JSON-1")
    assert invoice.items[0].value_sales_excluding_st == "9000"
    assert invoice.buyer_registration_type == invoice_pb2.BUYER_REGISTRATION_TYPE_REGISTERED
    with HubClient(shared_hub.address, shared_hub.api_key) as hub:
        (result,) = hub.validate([invoice])
        assert result.valid, describe_status(result.error)
    with pytest.raises(ValueError, match="buyerNtnCnic"):
        invoice_from_fbr_json({**body, "buyerNtnCnic": "2046004"}, "X")
    with pytest.raises(ValueError, match="invoice_type"):
        invoice_from_fbr_json({**body, "invoiceType": "Sales Invoice"}, "X")


def test_lookups_page_and_find_by_reference(shared_hub: HubProcess) -> None:
    with HubClient(shared_hub.address, shared_hub.api_key) as hub:
        list(hub.submit([make_invoice(f"LOOK-{n}") for n in range(3)]))
        record = hub.get_invoice(erp_reference="LOOK-1")
        assert record.erp_reference == "LOOK-1"
        pages = list(hub.list_invoices(page_size=2))
        assert len(pages) >= 2 and all(len(p.invoices) <= 2 for p in pages)
        assert hub.is_serving()
