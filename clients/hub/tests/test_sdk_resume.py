"""Broken streams: a submit resumed without loss or duplicates, results resumed by cursor.

The hub is a real process, killed (SIGKILL: acks of committed batches are lost on the wire)
or restarted (SIGTERM) while a stream is open; the clients must carry on by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hubprocess import HubProcess, make_invoice

from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk import (
    AsyncHubClient,
    FileCursorStore,
    HubClient,
    InvoiceOutcome,
    RetryPolicy,
)

STORED = {invoice_service_pb2.ACK_OUTCOME_ACCEPTED, invoice_service_pb2.ACK_OUTCOME_DUPLICATE}
FAST_RETRY = RetryPolicy(initial_backoff=0.05, max_backoff=0.5, max_attempts=200)
COUNT = 300
KILL_AFTER = 140


def _stored_references(hub: HubProcess) -> list[str]:
    with HubClient(hub.address, hub.api_key) as client:
        return [
            i.erp_reference for page in client.list_invoices(page_size=500) for i in page.invoices
        ]


def _check_one_ack_each(acks: list[invoice_service_pb2.InvoiceAck], hub: HubProcess) -> None:
    references = [f"RESUME-{n:04d}" for n in range(COUNT)]
    assert [a.erp_reference for a in acks] == references  # one ack each, in order
    assert {a.outcome for a in acks} <= STORED
    assert len({a.invoice_id for a in acks}) == COUNT
    stored = _stored_references(hub)
    assert sorted(stored) == references  # nothing lost, nothing stored twice


def test_sync_submit_resumes_after_the_hub_is_killed(
    own_hub: HubProcess, caplog: pytest.LogCaptureFixture
) -> None:
    def invoices() -> Iterator[invoice_pb2.Invoice]:
        for n in range(COUNT):
            if n == KILL_AFTER:
                own_hub.restart(kill=True)  # while batches are in flight
            yield make_invoice(f"RESUME-{n:04d}")

    caplog.set_level(logging.WARNING, logger="fbrhub_sdk")
    with HubClient(own_hub.address, own_hub.api_key, submit_retry=FAST_RETRY) as hub:
        acks = list(hub.submit(invoices(), batch_size=20, max_in_flight_batches=4))
    assert own_hub.starts == 2
    assert "SubmitInvoices stream broke" in caplog.text
    _check_one_ack_each(acks, own_hub)


async def test_async_submit_resumes_after_the_hub_is_killed(
    own_hub: HubProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def invoices() -> AsyncIterator[invoice_pb2.Invoice]:
        for n in range(COUNT):
            if n == KILL_AFTER:
                await asyncio.to_thread(own_hub.restart, kill=True)
            yield make_invoice(f"RESUME-{n:04d}")

    caplog.set_level(logging.WARNING, logger="fbrhub_sdk")
    async with AsyncHubClient(own_hub.address, own_hub.api_key, submit_retry=FAST_RETRY) as hub:
        acks = [a async for a in hub.submit(invoices(), batch_size=20, max_in_flight_batches=4)]
    assert "SubmitInvoices stream broke" in caplog.text
    await asyncio.to_thread(_check_one_ack_each, acks, own_hub)


def _submit_and_wait(hub: HubProcess, references: list[str]) -> list[InvoiceOutcome]:
    with HubClient(hub.address, hub.api_key) as client:
        outcomes = client.submit_and_wait([make_invoice(r) for r in references], timeout=60)
    assert all(o.accepted for o in outcomes), [o.state for o in outcomes]
    return outcomes


def test_sync_results_resume_from_the_saved_cursor_across_a_restart(
    own_hub: HubProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fbrhub_sdk")
    store = FileCursorStore(tmp_path / "results.cursor")
    first = _submit_and_wait(own_hub, [f"FOLLOW-A-{n}" for n in range(10)])
    second_refs = [f"FOLLOW-B-{n}" for n in range(10)]
    seen: list[str] = []
    wanted = {o.invoice_id for o in first}
    done = threading.Event()

    def follow() -> None:
        with HubClient(own_hub.address, own_hub.api_key, results_retry=FAST_RETRY) as client:
            for message in client.results(store, outcomes_only=True):
                seen.append(message.event.invoice_id)
                if wanted <= set(seen):
                    done.set()
                    if len(seen) >= 20:
                        return

    follower = threading.Thread(target=follow)
    follower.start()
    assert done.wait(60), "the follower did not see the first outcomes"
    done.clear()
    own_hub.restart()  # SIGTERM: the follow stream ends; the follower reconnects
    second = _submit_and_wait(own_hub, second_refs)
    wanted = {o.invoice_id for o in first + second}
    follower.join(90)
    assert not follower.is_alive()
    assert sorted(seen) == sorted(wanted)  # every outcome once: no gap, no repeat
    assert "StreamResults ended; reconnecting" in caplog.text
    # A new follower starts from the saved cursor: leaving the loop left the last event
    # unhandled, so it comes again, and nothing before it.
    with HubClient(own_hub.address, own_hub.api_key) as client:
        again = list(client.results(store, follow=False, outcomes_only=True))
    assert [m.event.invoice_id for m in again] == [seen[-1]]


async def test_async_results_resume_from_the_saved_cursor_across_a_restart(
    own_hub: HubProcess, tmp_path: Path
) -> None:
    store = FileCursorStore(tmp_path / "results.cursor")
    first = await asyncio.to_thread(_submit_and_wait, own_hub, [f"AF-A-{n}" for n in range(8)])
    seen: list[str] = []
    async with AsyncHubClient(own_hub.address, own_hub.api_key, results_retry=FAST_RETRY) as client:
        results = client.results(store, outcomes_only=True)
        async for message in results:
            seen.append(message.event.invoice_id)
            if len(seen) == len(first):
                break
        await results.aclose()  # type: ignore[attr-defined]
        saved = store.load()
        assert saved  # the cursor of the 7th event at least (the 8th comes again)
        await asyncio.to_thread(own_hub.restart)
        second = await asyncio.to_thread(_submit_and_wait, own_hub, [f"AF-B-{n}" for n in range(8)])
        resumed: list[str] = []
        async for message in client.results(store, outcomes_only=True):
            resumed.append(message.event.invoice_id)
            if len(resumed) == len(second) + 1:
                break
    # Breaking out of the loop left the last event unhandled: it comes first again.
    assert resumed[0] == seen[-1]
    assert sorted(resumed[1:]) == sorted(o.invoice_id for o in second)
