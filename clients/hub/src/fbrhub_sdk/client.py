"""``HubClient``: the synchronous client, for ERP workers (Odoo, ERPNext, Django, Celery).

It runs an :class:`~fbrhub_sdk.aio.AsyncHubClient` on an event loop in a daemon thread of
its own and forwards every call to it, so both clients behave the same in every respect.
The invoice iterables and cursor stores given to it are used in the calling thread only
(never on the loop), so ORM querysets and database-backed stores work as in any other
synchronous code. One client may be shared by several threads.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc

from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk._bridge import Bridge, CallerThread
from fbrhub_sdk._channel import Metadata
from fbrhub_sdk._submit import InvoiceSource
from fbrhub_sdk.aio import AsyncHubClient
from fbrhub_sdk.outcomes import InvoiceOutcome
from fbrhub_sdk.retry import DEFAULT_RESULTS_RETRY, DEFAULT_SUBMIT_RETRY, RetryPolicy


class _CallerSource(InvoiceSource):
    """Invoices drawn from an iterable in the caller's thread, a batch at a time."""

    def __init__(self, caller: CallerThread, invoices: Iterable[invoice_pb2.Invoice]) -> None:
        self._caller = caller
        self._iterator = iter(invoices)

    async def take(self, count: int) -> list[invoice_pb2.Invoice]:
        return await self._caller.run(lambda: list(itertools.islice(self._iterator, count)))


class _CallerStore:
    """A cursor store used from the loop, its methods run in the caller's thread."""

    def __init__(self, caller: CallerThread, store: Any) -> None:
        if not (callable(getattr(store, "load", None)) and callable(getattr(store, "save", None))):
            raise TypeError("a cursor store needs load() and save(cursor) methods")
        self._caller = caller
        self._store = store

    async def load(self) -> Any:
        return await self._caller.run(self._store.load)

    async def save(self, cursor: str) -> None:
        await self._caller.run(self._store.save, cursor)


class HubClient:
    """A synchronous client of the hub's ``InvoiceService``.

    Use it as a context manager (or call :meth:`close`)::

        with HubClient("127.0.0.1:50051", api_key) as hub:
            for ack in hub.submit(invoices):
                ...

    The arguments are those of :class:`~fbrhub_sdk.aio.AsyncHubClient`; ``interceptors``
    are ``grpc.aio`` client interceptors, as the calls run on ``grpc.aio``.
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
        self.address = address
        self._bridge = Bridge()

        async def connect() -> AsyncHubClient:
            return AsyncHubClient(
                address,
                api_key,
                tls=tls,
                root_certificates=root_certificates,
                client_certificate=client_certificate,
                credentials=credentials,
                interceptors=interceptors,
                options=options,
                metadata=metadata,
                timeout=timeout,
                submit_retry=submit_retry,
                results_retry=results_retry,
            )

        try:
            self._hub = self._bridge.run(lambda _: connect())
        except BaseException:
            self._bridge.close()
            raise

    def __enter__(self) -> HubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the client's thread; calls still running are cancelled."""
        if not self._bridge.closed:
            self._bridge.run(lambda _: self._hub.close())
            self._bridge.close()

    @property
    def aio(self) -> AsyncHubClient:
        """The async client underneath (its coroutines run on the client's own loop only)."""
        return self._hub

    def is_serving(self, service: str = "", *, timeout: float = 2.0) -> bool:
        """See :meth:`AsyncHubClient.is_serving`."""
        return self._bridge.run(lambda _: self._hub.is_serving(service, timeout=timeout))

    def submit(
        self,
        invoices: Iterable[invoice_pb2.Invoice],
        *,
        batch_size: int = 200,
        max_in_flight_batches: int = 8,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
    ) -> Iterator[invoice_service_pb2.InvoiceAck]:
        """Submit invoices; yield exactly one ack per invoice, in order, across reconnects.

        See :meth:`AsyncHubClient.submit`. ``invoices`` is read in this thread, a batch at
        a time, as the hub takes them.
        """
        batches = self._bridge.iterate(
            lambda caller: self._hub.submit_batches(
                _CallerSource(caller, invoices),
                batch_size=batch_size,
                max_in_flight_batches=max_in_flight_batches,
                retry=retry,
                metadata=metadata,
            )
        )
        for acks in batches:
            yield from acks

    def submit_and_wait(
        self,
        invoices: Iterable[invoice_pb2.Invoice],
        *,
        timeout: float = 120.0,
        batch_size: int = 200,
        metadata: Metadata = (),
    ) -> list[InvoiceOutcome]:
        """Submit invoices and wait until each is settled or ``timeout`` passes.

        See :meth:`AsyncHubClient.submit_and_wait`.
        """
        return self._bridge.run(
            lambda caller: self._hub.submit_and_wait_from(
                _CallerSource(caller, invoices),
                timeout=timeout,
                batch_size=batch_size,
                metadata=metadata,
            )
        )

    def results(
        self,
        cursor_store: Any = None,
        *,
        follow: bool = True,
        outcomes_only: bool = False,
        save_every: int = 1,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
    ) -> Iterator[invoice_service_pb2.StreamResultsResponse]:
        """Follow result events from ``cursor_store``, saving the cursor as they are handled.

        See :meth:`AsyncHubClient.results`. The store's methods run in this thread.
        """
        return self._bridge.iterate(
            lambda caller: self._hub.results(
                None if cursor_store is None else _CallerStore(caller, cursor_store),
                follow=follow,
                outcomes_only=outcomes_only,
                save_every=save_every,
                retry=retry,
                metadata=metadata,
            )
        )

    def stream_results(
        self, cursor: str = "", *, follow: bool = False, metadata: Metadata = ()
    ) -> Iterator[invoice_service_pb2.StreamResultsResponse]:
        """See :meth:`AsyncHubClient.stream_results`."""
        return self._bridge.iterate(
            lambda _: self._hub.stream_results(cursor, follow=follow, metadata=metadata)
        )

    def stream_outcomes(
        self, cursor: str = "", *, follow: bool = False, metadata: Metadata = ()
    ) -> Iterator[invoice_service_pb2.StreamResultsResponse]:
        """See :meth:`AsyncHubClient.stream_outcomes`."""
        return self._bridge.iterate(
            lambda _: self._hub.stream_outcomes(cursor, follow=follow, metadata=metadata)
        )

    def validate(
        self,
        invoices: Sequence[invoice_pb2.Invoice],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> list[invoice_service_pb2.ValidationResult]:
        """See :meth:`AsyncHubClient.validate`."""
        return self._bridge.run(
            lambda _: self._hub.validate(invoices, timeout=timeout, metadata=metadata)
        )

    def get_invoice(
        self,
        *,
        invoice_id: str = "",
        erp_reference: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> invoice_pb2.InvoiceRecord:
        """See :meth:`AsyncHubClient.get_invoice`."""
        return self._bridge.run(
            lambda _: self._hub.get_invoice(
                invoice_id=invoice_id,
                erp_reference=erp_reference,
                timeout=timeout,
                metadata=metadata,
            )
        )

    def list_invoices(
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
    ) -> Iterator[invoice_service_pb2.ListInvoicesResponse]:
        """See :meth:`AsyncHubClient.list_invoices`."""
        return self._bridge.iterate(
            lambda _: self._hub.list_invoices(
                page_size=page_size,
                states=states,
                received_after=received_after,
                received_before=received_before,
                invoice_date_from=invoice_date_from,
                invoice_date_to=invoice_date_to,
                timeout=timeout,
                metadata=metadata,
            )
        )

    def get_print_data(
        self,
        *,
        invoice_id: str = "",
        erp_reference: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> invoice_service_pb2.GetPrintDataResponse:
        """See :meth:`AsyncHubClient.get_print_data`."""
        return self._bridge.run(
            lambda _: self._hub.get_print_data(
                invoice_id=invoice_id,
                erp_reference=erp_reference,
                timeout=timeout,
                metadata=metadata,
            )
        )

    def resolve_invoice(
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
        """See :meth:`AsyncHubClient.resolve_invoice`."""
        return self._bridge.run(
            lambda _: self._hub.resolve_invoice(
                invoice_id,
                fbr_invoice_number=fbr_invoice_number,
                fbr_dated=fbr_dated,
                release_for_resend=release_for_resend,
                note=note,
                timeout=timeout,
                metadata=metadata,
            )
        )

    def retry_invoice(
        self,
        invoice_id: str,
        *,
        corrected: invoice_pb2.Invoice | None = None,
        note: str = "",
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> invoice_pb2.InvoiceRecord:
        """See :meth:`AsyncHubClient.retry_invoice`."""
        return self._bridge.run(
            lambda _: self._hub.retry_invoice(
                invoice_id, corrected=corrected, note=note, timeout=timeout, metadata=metadata
            )
        )

    def unary(
        self,
        method: Any,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Any:
        """See :meth:`AsyncHubClient.unary`; build the stub on ``client.aio.channel``."""
        return self._bridge.run(lambda _: self._hub.unary(method, request, timeout, metadata))
