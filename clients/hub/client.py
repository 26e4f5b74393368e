"""``HubClient``: the asyncio SDK that ERPs and internal tools use to talk to the hub.

One client holds one ``grpc.aio`` channel and sends ``authorization: Bearer <api key>`` on
every call. Failed calls raise :class:`~clients.hub.errors.HubApiError`; per-invoice
problems arrive inside acks and results (read them with
:func:`~clients.hub.errors.describe_status`).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.hub.errors import HubApiError
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 500
"""The most invoices the hub takes in one SubmitInvoices request."""

OUTCOME_KINDS: frozenset[invoice_pb2.ResultKind.ValueType] = frozenset(
    {
        invoice_pb2.RESULT_KIND_ACCEPTED,
        invoice_pb2.RESULT_KIND_REJECTED,
        invoice_pb2.RESULT_KIND_IN_DOUBT,
        invoice_pb2.RESULT_KIND_RESOLVED_ISSUED,
        invoice_pb2.RESULT_KIND_REQUEUED,
    }
)
"""Result kinds that tell what became of one invoice (not alerts, not heartbeats)."""

_T = TypeVar("_T")
Invoices = AsyncIterable[invoice_pb2.Invoice] | Iterable[invoice_pb2.Invoice]


async def _batches(invoices: Invoices, size: int) -> AsyncIterator[list[invoice_pb2.Invoice]]:
    batch: list[invoice_pb2.Invoice] = []
    if isinstance(invoices, AsyncIterable):
        async for invoice in invoices:
            batch.append(invoice)
            if len(batch) == size:
                yield batch
                batch = []
    else:
        for invoice in invoices:
            batch.append(invoice)
            if len(batch) == size:
                yield batch
                batch = []
                # Let the reader run between batches of a long synchronous iterable.
                await asyncio.sleep(0)
    if batch:
        yield batch


def _timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return stamp


def is_invoice_outcome(message: invoice_service_pb2.StreamResultsResponse) -> bool:
    """True when a StreamResults message reports what became of one invoice.

    False for heartbeats (no ``event``) and for hub alerts (``RESULT_KIND_ALERT``).
    """
    return (
        message.HasField("event")
        and message.event.kind in OUTCOME_KINDS
        and bool(message.event.invoice_id)
    )


class HubClient:
    """An async client of the hub's ``InvoiceService`` over one channel.

    Use it as an async context manager::

        async with HubClient("127.0.0.1:50051", api_key) as hub:
            async for ack in hub.submit(invoices):
                ...

    Args:
        address: ``host:port`` of the hub.
        api_key: the API key (``fbrhub_<key id>_<secret>``).
        tls: use TLS (implied by the two arguments below).
        root_certificates: PEM of the CA(s) that signed the hub's certificate; None for the
            system's root certificates.
        client_certificate: ``(certificate chain PEM, private key PEM)`` to present when the
            hub requires mutual TLS (``FBRHUB_TLS_CLIENT_CA_FILE``).
        options: extra ``grpc.aio`` channel options.
    """

    def __init__(
        self,
        address: str,
        api_key: str,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: tuple[bytes, bytes] | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        if tls or root_certificates is not None or client_certificate is not None:
            chain, key = client_certificate or (None, None)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates, private_key=key, certificate_chain=chain
            )
            self._channel = grpc.aio.secure_channel(address, credentials, options=list(options))
        else:
            self._channel = grpc.aio.insecure_channel(address, options=list(options))
        self._stub = invoice_service_pb2_grpc.InvoiceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls still running are cancelled."""
        await self._channel.close()

    async def is_serving(self, service: str = "", *, timeout: float = 2.0) -> bool:
        """Ask the standard gRPC health service whether ``service`` ("" = the hub) is SERVING.

        Returns:
            False when the hub answers anything but SERVING or cannot be reached in time.
        """
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def submit(
        self,
        invoices: Invoices,
        *,
        batch_size: int = 200,
        max_in_flight_batches: int = 8,
    ) -> AsyncIterator[invoice_service_pb2.InvoiceAck]:
        """Submit invoices over one SubmitInvoices stream; yield one ack per invoice, in order.

        Invoices are sent in batches of ``batch_size``. At most ``max_in_flight_batches``
        batches are sent but not yet acknowledged: the next batch waits for an ack, so a slow
        hub (or a slow consumer of this iterator) slows the sender instead of filling memory.

        Args:
            invoices: the invoices, from a sync or async iterable (read lazily).
            batch_size: invoices per request, 1 to 500.
            max_in_flight_batches: the most batches sent and not yet acknowledged.

        Yields:
            The ack of each invoice, in submission order. An ack's ``index`` is its position
            within its batch.

        Raises:
            ValueError: for a batch size or in-flight limit out of range.
            HubApiError: when the stream fails (the acks yielded so far stand: each was sent
                only after its invoices were committed).
        """
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if max_in_flight_batches < 1:
            raise ValueError("max_in_flight_batches must be at least 1")
        call = self._stub.SubmitInvoices(metadata=self._metadata)
        window = asyncio.Semaphore(max_in_flight_batches)
        sizes: collections.deque[int] = collections.deque()

        async def send_all() -> None:
            try:
                async for batch in _batches(invoices, batch_size):
                    await window.acquire()
                    sizes.append(len(batch))
                    await call.write(invoice_service_pb2.SubmitInvoicesRequest(invoices=batch))
            finally:
                # Even when the iterable fails: the batches already sent are committed at
                # the hub, so their acks are read (and yielded) before the error is raised.
                if not call.done():
                    await call.done_writing()

        sender = asyncio.create_task(send_all(), name="hub-submit-sender")
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    break
                assert isinstance(response, invoice_service_pb2.SubmitInvoicesResponse)
                expected = sizes.popleft() if sizes else 0
                if len(response.acks) != expected:
                    raise HubApiError(
                        grpc.StatusCode.INTERNAL,
                        f"the hub sent {len(response.acks)} acks for a batch of {expected}",
                    )
                window.release()
                for ack in response.acks:
                    yield ack
            await sender  # re-raises a failure of the invoice iterable
            if sizes:
                raise HubApiError(
                    grpc.StatusCode.INTERNAL, f"the stream ended with {len(sizes)} unacked batches"
                )
        except grpc.aio.AioRpcError as error:
            raise HubApiError.from_rpc_error(error) from None
        finally:
            if not call.done():
                call.cancel()
            if not sender.done():
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def validate(
        self, invoices: Sequence[invoice_pb2.Invoice], *, timeout: float | None = None
    ) -> list[invoice_service_pb2.ValidationResult]:
        """Dry-run the hub's validation on up to 500 invoices; nothing is stored.

        Returns:
            One result per invoice, in order; read failures with ``describe_status``.

        Raises:
            HubApiError: when the call fails.
        """
        request = invoice_service_pb2.ValidateInvoicesRequest(invoices=invoices)
        response = await self._unary(self._stub.ValidateInvoices(request, **self._call(timeout)))
        return list(response.results)

    async def get_invoice(
        self,
        *,
        invoice_id: str = "",
        erp_reference: str = "",
        timeout: float | None = None,
    ) -> invoice_pb2.InvoiceRecord:
        """Fetch one invoice by the hub's id or by the ERP's reference (give exactly one).

        Raises:
            ValueError: unless exactly one of ``invoice_id`` and ``erp_reference`` is given.
            HubApiError: NOT_FOUND when there is no such invoice for the caller's tenant.
        """
        if bool(invoice_id) == bool(erp_reference):
            raise ValueError("give exactly one of invoice_id and erp_reference")
        request = invoice_service_pb2.GetInvoiceRequest(
            invoice_id=invoice_id, erp_reference=erp_reference
        )
        response = await self._unary(self._stub.GetInvoice(request, **self._call(timeout)))
        return response.invoice

    async def list_invoices(
        self,
        *,
        page_size: int = 0,
        states: Sequence[invoice_pb2.InvoiceState.ValueType] = (),
        received_after: dt.datetime | None = None,
        received_before: dt.datetime | None = None,
        invoice_date_from: dt.date | None = None,
        invoice_date_to: dt.date | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[invoice_service_pb2.ListInvoicesResponse]:
        """Page through the tenant's invoices, newest first.

        Args:
            page_size: invoices per page (0 means the hub's default of 50; at most 500).
            states: only invoices in these states; empty means all.
            received_after: only invoices received at or after this time (naive = UTC).
            received_before: only invoices received before this time (naive = UTC).
            invoice_date_from: only invoices dated on or after this day.
            invoice_date_to: only invoices dated on or before this day.
            timeout: per-page deadline in seconds.

        Yields:
            Each page in turn, until the last.

        Raises:
            HubApiError: when a page cannot be fetched.
        """
        request = invoice_service_pb2.ListInvoicesRequest(
            page_size=page_size,
            states=states,
            received_after=_timestamp(received_after),
            received_before=_timestamp(received_before),
            invoice_date_from=invoice_date_from.isoformat() if invoice_date_from else "",
            invoice_date_to=invoice_date_to.isoformat() if invoice_date_to else "",
        )
        while True:
            page = await self._unary(self._stub.ListInvoices(request, **self._call(timeout)))
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def stream_results(
        self, cursor: str = "", *, follow: bool = False
    ) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        """Stream the tenant's outcome events from ``cursor`` ("" = from the first).

        Keep the ``cursor`` of the last message handled to resume after a disconnect
        without gaps or repeats. With ``follow`` the stream stays open; idle periods bring
        heartbeats (messages without an ``event``), and hub alerts arrive as events of kind
        ``RESULT_KIND_ALERT`` that name no invoice. To count outcomes, check each message
        with :func:`is_invoice_outcome` or use :meth:`stream_outcomes`.

        Raises:
            HubApiError: when the stream fails (CURSOR_INVALID for a bad cursor).
        """
        call = self._stub.StreamResults(
            invoice_service_pb2.StreamResultsRequest(cursor=cursor, follow=follow),
            metadata=self._metadata,
        )
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise HubApiError.from_rpc_error(error) from None
        finally:
            if not call.done():
                call.cancel()

    async def stream_outcomes(
        self, cursor: str = "", *, follow: bool = False
    ) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        """Like :meth:`stream_results`, but only the messages that carry an invoice outcome.

        Heartbeats (no ``event``) and hub alerts (``RESULT_KIND_ALERT``, about the hub rather
        than one invoice) are skipped, so every message yielded names an invoice. Resuming
        from the ``cursor`` of the last message yielded is safe: what was skipped after it
        is skipped again.

        Raises:
            HubApiError: when the stream fails (CURSOR_INVALID for a bad cursor).
        """
        async for message in self.stream_results(cursor, follow=follow):
            if is_invoice_outcome(message):
                yield message

    async def get_print_data(
        self,
        *,
        invoice_id: str = "",
        erp_reference: str = "",
        timeout: float | None = None,
    ) -> invoice_service_pb2.GetPrintDataResponse:
        """What a printed invoice needs: FBR number, ``dated`` and the QR code (PNG and SVG).

        Give exactly one of ``invoice_id`` and ``erp_reference``.

        Raises:
            ValueError: unless exactly one of ``invoice_id`` and ``erp_reference`` is given.
            HubApiError: FAILED_PRECONDITION (INVOICE_NOT_ACCEPTED) until FBR has accepted
                the invoice; NOT_FOUND when there is no such invoice for the caller's tenant.
        """
        if bool(invoice_id) == bool(erp_reference):
            raise ValueError("give exactly one of invoice_id and erp_reference")
        request = invoice_service_pb2.GetPrintDataRequest(
            invoice_id=invoice_id, erp_reference=erp_reference
        )
        return await self._unary(self._stub.GetPrintData(request, **self._call(timeout)))

    async def resolve_invoice(
        self,
        invoice_id: str,
        *,
        fbr_invoice_number: str = "",
        fbr_dated: str = "",
        release_for_resend: bool = False,
        note: str = "",
        timeout: float | None = None,
    ) -> invoice_pb2.InvoiceRecord:
        """Settle an IN_DOUBT invoice after checking FBR's records.

        Either FBR issued a number (give ``fbr_invoice_number``, and ``fbr_dated`` if known;
        the invoice becomes ACCEPTED) or it did not (``release_for_resend=True``; the invoice
        is queued again). Give exactly one of the two.

        Args:
            invoice_id: the hub's id for the invoice.
            fbr_invoice_number: the number FBR issued, when it did.
            fbr_dated: FBR's ``dated`` value for that number, if known.
            release_for_resend: FBR issued nothing: send the invoice again.
            note: why, for the record (no personal data).
            timeout: deadline in seconds.

        Returns:
            The invoice after the decision.

        Raises:
            ValueError: unless exactly one resolution is given.
            HubApiError: FAILED_PRECONDITION unless the invoice is IN_DOUBT; INVALID_ARGUMENT
                for a malformed FBR number.
        """
        if bool(fbr_invoice_number) == release_for_resend:
            raise ValueError("give exactly one of fbr_invoice_number and release_for_resend")
        request = invoice_service_pb2.ResolveInvoiceRequest(invoice_id=invoice_id, note=note)
        if fbr_invoice_number:
            request.mark_issued.fbr_invoice_number = fbr_invoice_number
            request.mark_issued.fbr_dated = fbr_dated
        else:
            request.release_for_resend = True
        response = await self._unary(self._stub.ResolveInvoice(request, **self._call(timeout)))
        return response.invoice

    async def retry_invoice(
        self,
        invoice_id: str,
        *,
        corrected: invoice_pb2.Invoice | None = None,
        note: str = "",
        timeout: float | None = None,
    ) -> invoice_pb2.InvoiceRecord:
        """Queue an invoice FBR rejected to be sent again, optionally corrected.

        Args:
            invoice_id: the hub's id for the REJECTED_FBR invoice.
            corrected: new content under the same ``erp_reference``; None resends as stored.
            note: why, for the record (no personal data).
            timeout: deadline in seconds.

        Returns:
            The invoice after the decision (QUEUED).

        Raises:
            HubApiError: FAILED_PRECONDITION unless the invoice is REJECTED_FBR;
                INVALID_ARGUMENT (with field violations) if the correction is invalid.
        """
        request = invoice_service_pb2.RetryInvoiceRequest(
            invoice_id=invoice_id, corrected_invoice=corrected, note=note
        )
        response = await self._unary(self._stub.RetryInvoice(request, **self._call(timeout)))
        return response.invoice

    def _call(self, timeout: float | None) -> dict[str, Any]:
        return {"metadata": self._metadata, "timeout": timeout}

    @staticmethod
    async def _unary(call: grpc.aio.UnaryUnaryCall[Any, _T]) -> _T:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise HubApiError.from_rpc_error(error) from None
