"""The SubmitInvoices stream pipeline: bounded read-ahead, coalesced commits, ordered acks.

A reader task takes requests off the stream while the stream's *unacked window* has room
(``FBRHUB_INGEST_WINDOW_INVOICES``); once it is full the reader stops, gRPC stops granting
HTTP/2 flow-control credit, and the ERP's writes block. The writer takes whatever requests
are waiting (up to ``COALESCE_MAX`` invoices), stores them in ONE transaction, then answers
each request in order and frees its share of the window. So a pipelining client gets the
throughput of large transactions, a request-at-a-time client still gets one transaction per
request, and memory per stream is bounded by the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from fbrhub.v1 import invoice_service_pb2
from server.access.tenants import TenantProfile
from server.api.convert import invoices as converters
from server.errors import BatchTooLarge
from server.invoices.intake import Ack, Ingestor
from server.invoices.model import SubmittedInvoice
from server.observability import metrics
from server.observability.semconv import ACK_OUTCOME

COALESCE_MAX = 2000
PIPELINE_DEPTH = 2


class InvoiceWindow:
    """Counts invoices read but not yet acked; :meth:`acquire` waits while it is full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, count: int) -> None:
        """Take room for ``count`` invoices (a request bigger than the window waits for empty)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.used + count <= self.capacity or self.used == 0
            )
            self.used += count

    async def release(self, count: int) -> None:
        """Give back room once invoices are acked."""
        async with self._changed:
            self.used -= count
            self._changed.notify_all()


@dataclass
class _Request:
    invoices: list[SubmittedInvoice]
    # When it was read off the stream (time.perf_counter): the start of its ack latency.
    received: float


_END = object()


_Stored = tuple[list["_Request"], "asyncio.Task[list[Ack]]"]


async def submit_stream(
    requests: AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest],
    *,
    tenant: TenantProfile,
    ingestor: Ingestor,
    window_invoices: int,
    max_per_request: int,
    actor: str,
) -> AsyncIterator[invoice_service_pb2.SubmitInvoicesResponse]:
    """Drive one SubmitInvoices stream; yields one response per request, in order."""
    window = InvoiceWindow(window_invoices)
    # A group may take at most its share of the window: with the whole window in one group
    # the next one could not be read, let alone validated, until that group had committed.
    coalesce_max = max(1, min(COALESCE_MAX, window_invoices // PIPELINE_DEPTH))
    queue: asyncio.Queue[_Request | BaseException | object] = asyncio.Queue()
    reader = asyncio.create_task(
        _read(requests, queue, window, max_per_request), name="submit-reader"
    )
    # Up to PIPELINE_DEPTH groups are being stored at once: the next group is validated
    # (CPU, here) while the previous one commits (I/O, in the database). Acks still go out
    # strictly in request order, each only once its own group has committed.
    in_flight: deque[_Stored] = deque()
    try:
        pending: list[object] = []
        ended = False
        while not ended or in_flight:
            if in_flight and (ended or len(in_flight) >= PIPELINE_DEPTH or queue.empty()):
                async for response in _acknowledge(in_flight.popleft(), window):
                    yield response
                continue
            item = pending.pop(0) if pending else await queue.get()
            if item is _END:
                ended = True
                continue
            if isinstance(item, BaseException):
                # Ack what is already being stored before ending the stream with the error.
                while in_flight:
                    async for response in _acknowledge(in_flight.popleft(), window):
                        yield response
                raise item
            assert isinstance(item, _Request)
            group = _coalesce(item, queue, pending, coalesce_max)
            await ingestor.wait_for_room(tenant)
            combined = [invoice for request in group for invoice in request.invoices]
            in_flight.append(
                (group, asyncio.create_task(ingestor.submit(tenant, combined, actor=actor)))
            )
    finally:
        reader.cancel()
        for _, task in in_flight:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _read(
    requests: AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest],
    queue: asyncio.Queue[_Request | BaseException | object],
    window: InvoiceWindow,
    max_per_request: int,
) -> None:
    """Take requests off the stream while the window has room; end with an error or _END."""
    try:
        async for request in requests:
            if len(request.invoices) > max_per_request:
                raise BatchTooLarge(
                    "invoices", f"a request may hold at most {max_per_request} invoices"
                )
            received = time.perf_counter()
            invoices = [converters.invoice_to_domain(m) for m in request.invoices]
            await window.acquire(len(invoices))
            await queue.put(_Request(invoices, received))
    except Exception as exc:
        await queue.put(exc)
    finally:
        await queue.put(_END)


def _coalesce(
    first: _Request,
    queue: asyncio.Queue[_Request | BaseException | object],
    pending: list[object],
    coalesce_max: int,
) -> list[_Request]:
    """``first`` and whatever requests already wait behind it, up to ``coalesce_max`` invoices.

    Something else met on the way (an error, the end) is left in ``pending`` for the caller.
    """
    group = [first]
    size = len(first.invoices)
    while not queue.empty() and size < coalesce_max:
        more = queue.get_nowait()
        if not isinstance(more, _Request):
            pending.append(more)
            break
        group.append(more)
        size += len(more.invoices)
    return group


async def _acknowledge(
    stored: _Stored, window: InvoiceWindow
) -> AsyncIterator[invoice_service_pb2.SubmitInvoicesResponse]:
    """The responses of a group once it has committed, each freeing its share of the window."""
    group, task = stored
    for response, count in _responses(group, await task):
        yield response
        await window.release(count)


def _responses(
    group: list[_Request], acks: list[Ack]
) -> Iterator[tuple[invoice_service_pb2.SubmitInvoicesResponse, int]]:
    """One response per request of a stored group, with each ack numbered in its request."""
    start = 0
    for request in group:
        count = len(request.invoices)
        mine = acks[start : start + count]
        # One counter update per outcome rather than per invoice: each update costs an
        # attribute lookup in the SDK, and the counts are the same.
        for outcome, invoices in Counter(ack.outcome.value for ack in mine).items():
            metrics.invoices_ingested.add(invoices, {ACK_OUTCOME: outcome})
        metrics.ingest_ack_duration.record(time.perf_counter() - request.received)
        yield (
            invoice_service_pb2.SubmitInvoicesResponse(
                acks=[converters.ack_to_proto(a, index=a.index - start) for a in mine]
            ),
            count,
        )
        start += count
