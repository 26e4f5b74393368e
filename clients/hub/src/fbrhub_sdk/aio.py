"""``AsyncHubClient``: the asyncio client, and the one implementation both clients share.

The synchronous :class:`~fbrhub_sdk.HubClient` runs this client on an event loop of its
own and forwards each call, so every behaviour (batching, resume, reconnects, errors,
metadata) is written once, here. A new RPC is one method here plus a one-line forwarder in
``client.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Callable, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from fbrhub_sdk._channel import ChannelConfig, Metadata, call_metadata, check_metadata
from fbrhub_sdk._results import AsyncCursorStore, Follower, FollowSettings
from fbrhub_sdk._submit import (
    Invoices,
    InvoiceSource,
    Submission,
    SubmitSettings,
    source_of,
)
from fbrhub_sdk.cursors import MemoryCursorStore
from fbrhub_sdk.errors import HubApiError
from fbrhub_sdk.outcomes import InvoiceOutcome, is_invoice_outcome, settle
from fbrhub_sdk.retry import DEFAULT_RESULTS_RETRY, DEFAULT_SUBMIT_RETRY, RetryPolicy

_T = TypeVar("_T")
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}, serialised


def _timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc))
    return stamp


def _health_request(service: str) -> bytes:
    """HealthCheckRequest{service} serialised (no dependency on grpcio-health-checking)."""
    data = service.encode()
    if len(data) > 127:
        raise ValueError("service name too long")
    return b"\x0a" + bytes([len(data)]) + data if data else b""


class AsyncHubClient:
    """An asyncio client of the hub's ``InvoiceService``. Create it inside a coroutine.

    Use it as an async context manager::

        async with AsyncHubClient("127.0.0.1:50051", api_key) as hub:
            async for ack in hub.submit(invoices):
                ...

    Args:
        address: ``host:port`` of the hub.
        api_key: the API key (``fbrhub_<key id>_<secret>``).
        tls: use TLS (implied by the certificate arguments).
        root_certificates: PEM of the CA(s) that signed the hub's certificate; None for the
            system's root certificates.
        client_certificate: ``(certificate chain PEM, private key PEM)`` to present when the
            hub requires mutual TLS.
        credentials: ready-made ``grpc.ChannelCredentials`` (instead of the three above).
        interceptors: ``grpc.aio`` client interceptors, outermost first.
        options: extra channel options.
        metadata: sent with every call (e.g. ``("x-erp-instance", "odoo-7")``).
        timeout: default deadline in seconds of each unary call; None for none.
        submit_retry: default retry policy of :meth:`submit`.
        results_retry: default retry policy of :meth:`results`.
    """

    def __init__(
        self,
        address: str,
        api_key: str,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: tuple[bytes, bytes] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        metadata: Metadata = (),
        timeout: float | None = 30.0,
        submit_retry: RetryPolicy = DEFAULT_SUBMIT_RETRY,
        results_retry: RetryPolicy = DEFAULT_RESULTS_RETRY,
    ) -> None:
        check_metadata(metadata)
        self.address = address
        self._api_key = api_key
        self._metadata = tuple(metadata)
        self._timeout = timeout
        self._submit_retry = submit_retry
        self._results_retry = results_retry
        config = ChannelConfig(
            address, tls, root_certificates, client_certificate, credentials, interceptors, options
        )
        self.channel = config.open()
        """The ``grpc.aio`` channel, for stubs of the hub's other services."""
        self._invoices = invoice_service_pb2_grpc.InvoiceServiceStub(self.channel)
        self._health: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            _HEALTH_CHECK
        )

    async def __aenter__(self) -> AsyncHubClient:
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
        await self.channel.close()

    def call_metadata(self, metadata: Metadata = ()) -> tuple[tuple[str, str], ...]:
        """The metadata one call sends: API key, the client's, ``metadata``, trace context.

        The trace context is the caller's current OpenTelemetry context, read now.
        """
        check_metadata(metadata)
        return call_metadata(self._api_key, self._metadata, metadata)

    async def is_serving(self, service: str = "", *, timeout: float = 2.0) -> bool:
        """Ask the standard gRPC health service whether ``service`` ("" = the hub) is SERVING.

        Returns:
            False when the hub answers anything but SERVING or cannot be reached in time.
        """
        try:
            response = await self._health(_health_request(service), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(response == _SERVING)

    # --- submitting -----------------------------------------------------------------------

    async def submit(
        self,
        invoices: Invoices,
        *,
        batch_size: int = 200,
        max_in_flight_batches: int = 8,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[invoice_service_pb2.InvoiceAck]:
        """Submit invoices; yield exactly one ack per invoice, in submission order.

        Invoices are read lazily and sent in batches over one stream; at most
        ``max_in_flight_batches`` batches wait for their acks, so the hub's pace (and the
        consumer's) sets the pace of reading ``invoices``. If the stream breaks (the hub
        restarts, the network drops), a new one is opened after a backoff and every invoice
        without an ack is sent again: one whose first send the hub had committed comes back
        DUPLICATE with the stored id and state, so treat DUPLICATE like ACCEPTED. Nothing is
        lost and nothing is stored twice, provided each invoice has its own ``erp_reference``.

        Args:
            invoices: the invoices, from a sync or async iterable (read lazily).
            batch_size: invoices per request, 1 to 500.
            max_in_flight_batches: the most batches sent and not yet acknowledged.
            retry: when to open a new stream after one broke (default: the client's).
            metadata: extra metadata for this call.

        Yields:
            The ack of each invoice. ``ack.index`` is its position within the request that
            carried it (requests are re-cut when invoices are resent).

        Raises:
            ValueError: for a batch size or in-flight limit out of range.
            HubApiError: when the stream fails for good (the acks yielded so far stand:
                each was sent only after its invoices were committed).
        """
        async for acks in self.submit_batches(
            source_of(invoices),
            batch_size=batch_size,
            max_in_flight_batches=max_in_flight_batches,
            retry=retry,
            metadata=metadata,
        ):
            for ack in acks:
                yield ack

    async def submit_batches(
        self,
        source: InvoiceSource,
        *,
        batch_size: int = 200,
        max_in_flight_batches: int = 8,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[list[invoice_service_pb2.InvoiceAck]]:
        """Like :meth:`submit`, from an :class:`InvoiceSource`, one list of acks per response."""
        settings = SubmitSettings(batch_size, max_in_flight_batches, retry or self._submit_retry)
        call_metadata = self.call_metadata(metadata)
        submission = Submission(
            lambda: self._invoices.SubmitInvoices(metadata=call_metadata), source, settings
        )
        async for acks in submission.acks():
            yield acks

    async def submit_and_wait(
        self,
        invoices: Invoices,
        *,
        timeout: float = 120.0,
        batch_size: int = 200,
        metadata: Metadata = (),
    ) -> list[InvoiceOutcome]:
        """Submit invoices, then wait until the hub has settled each one, or ``timeout``.

        For simple integrations that send a few invoices and want FBR's answer in the same
        call. For volume, use :meth:`submit` and :meth:`results` instead: this polls
        ``GetInvoice`` for each invoice still on its way.

        Args:
            invoices: the invoices, from a sync or async iterable.
            timeout: seconds to wait for FBR's outcomes after the last ack.
            batch_size: invoices per request.
            metadata: extra metadata for every call.

        Returns:
            One outcome per invoice, in order; check ``settled``, ``accepted``,
            ``fbr_invoice_number`` and ``violations``. Invoices still on their way at the
            deadline are returned unsettled, not raised.

        Raises:
            HubApiError: when a call fails for good.
        """
        return await self.submit_and_wait_from(
            source_of(invoices), timeout=timeout, batch_size=batch_size, metadata=metadata
        )

    async def submit_and_wait_from(
        self,
        source: InvoiceSource,
        *,
        timeout: float = 120.0,
        batch_size: int = 200,
        metadata: Metadata = (),
    ) -> list[InvoiceOutcome]:
        """Like :meth:`submit_and_wait`, from an :class:`InvoiceSource`."""
        outcomes: list[InvoiceOutcome] = []
        async for acks in self.submit_batches(source, batch_size=batch_size, metadata=metadata):
            outcomes.extend(InvoiceOutcome(ack) for ack in acks)
        read = partial(self._read_record, metadata=metadata)
        return await settle(outcomes, read, timeout)

    async def _read_record(
        self, invoice_id: str, *, metadata: Metadata
    ) -> invoice_pb2.InvoiceRecord:
        return await self.get_invoice(invoice_id=invoice_id, metadata=metadata)

    # --- following results -----------------------------------------------------------------

    async def results(
        self,
        cursor_store: Any = None,
        *,
        follow: bool = True,
        outcomes_only: bool = False,
        save_every: int = 1,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        """Follow the tenant's result events, resuming from ``cursor_store`` and keeping it.

        The cursor is loaded once; each event's cursor is saved when the caller comes back
        for the next event (every ``save_every`` events) and at heartbeats. Broken streams
        are reopened from the last handled cursor after a backoff, for ever by default.

        Args:
            cursor_store: a :class:`~fbrhub_sdk.cursors.CursorStore` (``load()``,
                ``save(cursor)``; sync or async methods); None starts from the first event
                and keeps the cursor in memory.
            follow: keep following new events (False: stop at the end of the backlog).
            outcomes_only: skip hub alerts, so that every event names an invoice.
            save_every: save the cursor after every n-th handled event.
            retry: when to reconnect (default: the client's, for ever).
            metadata: extra metadata for the stream.

        Yields:
            Messages that carry an ``event`` (never heartbeats), each once.

        Raises:
            CursorInvalidError: when the stored cursor is not valid for this key.
            HubApiError: for any other failure not worth a retry.
        """
        settings = FollowSettings(follow, outcomes_only, save_every, retry or self._results_retry)
        call_metadata = self.call_metadata(metadata)
        store = AsyncCursorStore(MemoryCursorStore() if cursor_store is None else cursor_store)

        def open_stream(cursor: str) -> Any:
            request = invoice_service_pb2.StreamResultsRequest(cursor=cursor, follow=follow)
            return self._invoices.StreamResults(request, metadata=call_metadata)

        async for message in Follower(open_stream, store, settings).events():
            yield message

    async def stream_results(
        self, cursor: str = "", *, follow: bool = False, metadata: Metadata = ()
    ) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        """One StreamResults call from ``cursor``, heartbeats included, without reconnects.

        Prefer :meth:`results`, which keeps the cursor and reconnects.

        Raises:
            HubApiError: when the stream fails (CURSOR_INVALID for a bad cursor).
        """
        call = self._invoices.StreamResults(
            invoice_service_pb2.StreamResultsRequest(cursor=cursor, follow=follow),
            metadata=self.call_metadata(metadata),
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
        self, cursor: str = "", *, follow: bool = False, metadata: Metadata = ()
    ) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        """Like :meth:`stream_results`, but only the messages that carry an invoice outcome."""
        async for message in self.stream_results(cursor, follow=follow, metadata=metadata):
            if is_invoice_outcome(message):
                yield message

    # --- unary calls ----------------------------------------------------------------------

    async def validate(
        self,
        invoices: Sequence[invoice_pb2.Invoice],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> list[invoice_service_pb2.ValidationResult]:
        """Dry-run the hub's validation on up to 500 invoices; nothing is stored.

        Returns:
            One result per invoice, in order; read failures with ``describe_status``.
        """
        request = invoice_service_pb2.ValidateInvoicesRequest(invoices=invoices)
        response = await self.unary(self._invoices.ValidateInvoices, request, timeout, metadata)
        return list(response.results)

    async def get_invoice(
        self,
        *,
        invoice_id: str = "",
        erp_reference: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> invoice_pb2.InvoiceRecord:
        """Fetch one invoice by the hub's id or by the ERP's reference (give exactly one).

        Raises:
            ValueError: unless exactly one of ``invoice_id`` and ``erp_reference`` is given.
            NotFoundError: when there is no such invoice for the caller's tenant.
        """
        if bool(invoice_id) == bool(erp_reference):
            raise ValueError("give exactly one of invoice_id and erp_reference")
        request = invoice_service_pb2.GetInvoiceRequest(
            invoice_id=invoice_id, erp_reference=erp_reference
        )
        response = await self.unary(self._invoices.GetInvoice, request, timeout, metadata)
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
        metadata: Metadata = (),
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
            metadata: extra metadata for each page's call.

        Yields:
            Each page in turn, until the last.
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
            page = await self.unary(self._invoices.ListInvoices, request, timeout, metadata)
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def get_print_data(
        self,
        *,
        invoice_id: str = "",
        erp_reference: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> invoice_service_pb2.GetPrintDataResponse:
        """What a printed invoice needs: FBR number, ``dated`` and the QR code (PNG and SVG).

        Raises:
            ValueError: unless exactly one of ``invoice_id`` and ``erp_reference`` is given.
            ConflictError: INVOICE_NOT_ACCEPTED until FBR has accepted the invoice.
            NotFoundError: when there is no such invoice for the caller's tenant.
        """
        if bool(invoice_id) == bool(erp_reference):
            raise ValueError("give exactly one of invoice_id and erp_reference")
        request = invoice_service_pb2.GetPrintDataRequest(
            invoice_id=invoice_id, erp_reference=erp_reference
        )
        return await self.unary(self._invoices.GetPrintData, request, timeout, metadata)

    async def resolve_invoice(
        self,
        invoice_id: str,
        *,
        fbr_invoice_number: str = "",
        fbr_dated: str = "",
        release_for_resend: bool = False,
        note: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> invoice_pb2.InvoiceRecord:
        """Settle an IN_DOUBT invoice after checking FBR's records.

        Either FBR issued a number (give ``fbr_invoice_number``, and ``fbr_dated`` if known;
        the invoice becomes ACCEPTED) or it did not (``release_for_resend=True``; the invoice
        is queued again). Give exactly one of the two. ``note`` says why, for the record
        (no personal data).

        Raises:
            ValueError: unless exactly one resolution is given.
            ConflictError: unless the invoice is IN_DOUBT.
        """
        if bool(fbr_invoice_number) == release_for_resend:
            raise ValueError("give exactly one of fbr_invoice_number and release_for_resend")
        request = invoice_service_pb2.ResolveInvoiceRequest(invoice_id=invoice_id, note=note)
        if fbr_invoice_number:
            request.mark_issued.fbr_invoice_number = fbr_invoice_number
            request.mark_issued.fbr_dated = fbr_dated
        else:
            request.release_for_resend = True
        response = await self.unary(self._invoices.ResolveInvoice, request, timeout, metadata)
        return response.invoice

    async def retry_invoice(
        self,
        invoice_id: str,
        *,
        corrected: invoice_pb2.Invoice | None = None,
        note: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> invoice_pb2.InvoiceRecord:
        """Queue an invoice FBR rejected to be sent again, optionally corrected.

        Args:
            invoice_id: the hub's id for the REJECTED_FBR invoice.
            corrected: new content under the same ``erp_reference``; None resends as stored.
            note: why, for the record (no personal data).
            timeout: deadline in seconds.
            metadata: extra metadata for this call.

        Raises:
            ConflictError: unless the invoice is REJECTED_FBR.
            InvoiceInvalidError: if the correction is invalid (with field violations).
        """
        request = invoice_service_pb2.RetryInvoiceRequest(
            invoice_id=invoice_id, corrected_invoice=corrected, note=note
        )
        response = await self.unary(self._invoices.RetryInvoice, request, timeout, metadata)
        return response.invoice

    async def unary(
        self,
        method: Callable[..., Awaitable[_T]],
        request: Any,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> _T:
        """Call a unary method of any of the hub's stubs with this client's metadata.

        The extension point for the hub's other services: build a stub on :attr:`channel`
        and pass its method, e.g. ``await hub.unary(AuditServiceStub(hub.channel).
        VerifyAuditChain, request)``.

        Args:
            method: the stub's multi-callable.
            request: the request message.
            timeout: deadline in seconds (default: the client's).
            metadata: extra metadata for this call.

        Raises:
            HubApiError: the typed error of a failed call.
        """
        call = method(
            request,
            timeout=self._timeout if timeout is None else timeout,
            metadata=self.call_metadata(metadata),
        )
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise HubApiError.from_rpc_error(error) from None
