"""The SubmitInvoices engine shared by both clients: batches, backpressure, resume.

Invoices are drawn lazily from a source and sent in batches over one stream. At most
``max_in_flight_batches`` batches are sent and not yet acknowledged, so a slow hub (or a
slow consumer of the acks) slows the reading of the source instead of filling memory.

Every invoice drawn stays in ``unacked`` until its ack arrives. When the stream breaks
with a retryable status, a new stream is opened after a backoff and the unacked invoices
are sent first, in order, before anything new: the hub answers ACCEPTED for those it had
not stored and DUPLICATE (with the stored id) for those it had committed before the break,
because ingest is idempotent by ``erp_reference``. Each invoice therefore gets exactly one
ack, in submission order, and none is stored twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

import grpc

from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk.errors import HubApiError, ProtocolError
from fbrhub_sdk.retry import RetryPolicy

logger = logging.getLogger("fbrhub_sdk")

MAX_BATCH_SIZE = 500
"""The most invoices the hub takes in one SubmitInvoices request."""

Invoices = Union[Iterable[invoice_pb2.Invoice], AsyncIterable[invoice_pb2.Invoice]]
"""What submit takes: any iterable or async iterable of invoices, read lazily."""

if TYPE_CHECKING:
    SubmitCall = grpc.aio.StreamStreamCall[
        invoice_service_pb2.SubmitInvoicesRequest, invoice_service_pb2.SubmitInvoicesResponse
    ]

OpenSubmit = Callable[[], "SubmitCall"]
# How long the end of a stream may wait for the sender to finish after the hub's last ack.
_SENDER_GRACE_SECONDS = 5.0


class InvoiceSource:
    """Where the engine draws invoices from: ``take(n)`` returns up to n, ``[]`` at the end."""

    async def take(self, count: int) -> list[invoice_pb2.Invoice]:
        """Up to ``count`` invoices; an empty list once the source is exhausted."""
        raise NotImplementedError


class IterableSource(InvoiceSource):
    """Invoices from a synchronous iterable, read on the event loop."""

    def __init__(self, invoices: Iterable[invoice_pb2.Invoice]) -> None:
        self._iterator: Iterator[invoice_pb2.Invoice] = iter(invoices)

    async def take(self, count: int) -> list[invoice_pb2.Invoice]:
        batch = list(itertools.islice(self._iterator, count))
        # Let the reader run between batches of a long synchronous iterable.
        await asyncio.sleep(0)
        return batch


class AsyncIterableSource(InvoiceSource):
    """Invoices from an async iterable."""

    def __init__(self, invoices: AsyncIterable[invoice_pb2.Invoice]) -> None:
        self._iterator = invoices.__aiter__()

    async def take(self, count: int) -> list[invoice_pb2.Invoice]:
        batch: list[invoice_pb2.Invoice] = []
        while len(batch) < count:
            try:
                batch.append(await self._iterator.__anext__())
            except StopAsyncIteration:
                break
        return batch


def source_of(invoices: Invoices) -> InvoiceSource:
    """The source for an iterable or async iterable of invoices."""
    if isinstance(invoices, AsyncIterable):
        return AsyncIterableSource(invoices)
    return IterableSource(invoices)


@dataclass(frozen=True)
class SubmitSettings:
    """How one submission runs.

    Attributes:
        batch_size: invoices per request, 1 to 500.
        max_in_flight_batches: the most batches sent and not yet acknowledged.
        retry: when to open a new stream after one broke.
    """

    batch_size: int
    max_in_flight_batches: int
    retry: RetryPolicy

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if self.max_in_flight_batches < 1:
            raise ValueError("max_in_flight_batches must be at least 1")


class Submission:
    """One submission of a source of invoices, over as many streams as it takes.

    Args:
        open_stream: opens a new SubmitInvoices call (with its metadata).
        source: the invoices.
        settings: batch size, window and retry policy.
    """

    def __init__(
        self, open_stream: OpenSubmit, source: InvoiceSource, settings: SubmitSettings
    ) -> None:
        self._open = open_stream
        self._source = source
        self._settings = settings
        self._unacked: collections.deque[invoice_pb2.Invoice] = collections.deque()
        self._exhausted = False
        self._taking: asyncio.Future[list[invoice_pb2.Invoice]] | None = None
        self.streams_opened = 0
        """How many streams this submission opened (1 unless a stream broke)."""

    async def acks(self) -> AsyncIterator[list[invoice_service_pb2.InvoiceAck]]:
        """The acks, one list per response, in submission order, across reconnects.

        Raises:
            HubApiError: when a stream fails with a status not worth a retry, or the retry
                policy gives up (the acks yielded so far stand).
            Exception: whatever the source raised, once the acks of the invoices already
                sent have been yielded.
        """
        try:
            async for acks in self._attempts():
                yield acks
        finally:
            if self._taking is not None:
                self._taking.cancel()
                await asyncio.gather(self._taking, return_exceptions=True)

    async def _attempts(self) -> AsyncIterator[list[invoice_service_pb2.InvoiceAck]]:
        """Stream after stream until the source is exhausted and everything is acked."""
        delays: Iterator[float] | None = None
        while True:
            progressed = False
            try:
                async for acks in self._attempt():
                    progressed = True
                    yield acks
                return
            except grpc.aio.AioRpcError as error:
                if progressed or delays is None:
                    delays = self._settings.retry.delays()
                delay = next(delays, None) if self._settings.retry.retries(error.code()) else None
                if delay is None:
                    raise HubApiError.from_rpc_error(error) from None
                logger.warning(
                    "SubmitInvoices stream broke (%s); resending %d unacked invoices in %.2fs",
                    error.code().name,
                    len(self._unacked),
                    delay,
                )
                await asyncio.sleep(delay)

    async def _attempt(self) -> AsyncIterator[list[invoice_service_pb2.InvoiceAck]]:
        """One stream: resend what is unacked, then go on with the source."""
        self.streams_opened += 1
        call = self._open()
        window = asyncio.Semaphore(self._settings.max_in_flight_batches)
        sizes: collections.deque[int] = collections.deque()
        sender = asyncio.ensure_future(self._send_all(call, window, sizes))
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    break
                assert isinstance(response, invoice_service_pb2.SubmitInvoicesResponse)
                expected = sizes.popleft() if sizes else 0
                if len(response.acks) != expected:
                    raise ProtocolError(
                        grpc.StatusCode.INTERNAL,
                        f"the hub sent {len(response.acks)} acks for a batch of {expected}",
                    )
                for _ in range(expected):
                    self._unacked.popleft()
                window.release()
                yield list(response.acks)
            done, _ = await asyncio.wait({sender}, timeout=_SENDER_GRACE_SECONDS)
            if not done:
                raise ProtocolError(grpc.StatusCode.INTERNAL, "the hub ended the stream early")
            sender.result()  # re-raises a failure of the source or of a write
            if self._unacked:
                raise ProtocolError(
                    grpc.StatusCode.INTERNAL,
                    f"the stream ended with {len(self._unacked)} invoices unacked",
                )
        finally:
            if not call.done():
                call.cancel()
            if not sender.done():
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_all(
        self,
        call: SubmitCall,
        window: asyncio.Semaphore,
        sizes: collections.deque[int],
    ) -> None:
        size = self._settings.batch_size
        resend = list(self._unacked)

        async def send(batch: list[invoice_pb2.Invoice]) -> None:
            await window.acquire()
            sizes.append(len(batch))
            await call.write(invoice_service_pb2.SubmitInvoicesRequest(invoices=batch))

        try:
            for start in range(0, len(resend), size):
                await send(resend[start : start + size])
            while not self._exhausted:
                # The source is read by a task of its own that outlives a broken stream: the
                # caller's iterator must never see a cancellation (an async generator
                # cancelled mid-step is finished for good, and its invoices lost).
                if self._taking is None:
                    self._taking = asyncio.ensure_future(self._source.take(size))
                batch = await asyncio.shield(self._taking)
                self._taking = None
                if not batch:
                    self._exhausted = True
                    break
                self._unacked.extend(batch)
                await send(batch)
        finally:
            # Even when the source fails: the batches already sent are committed at the hub,
            # so their acks are read (and yielded) before the error is raised.
            if not call.done():
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await call.done_writing()
