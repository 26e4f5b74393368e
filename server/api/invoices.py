"""InvoiceService: protobuf in, one domain call, protobuf out. No business rules here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.access.tenants import TenantProfile, load_tenant
from server.api.convert import invoices as convert
from server.api.convert.queries import (
    filters_from_request,
    invoice_id_from_text,
    lookup_from_request,
    print_data_to_proto,
)
from server.api.follow import FollowOptions, Step, follow_events
from server.api.ingest_stream import submit_stream
from server.api.interceptor import current_caller
from server.api.limits import page_size
from server.api.tokens import Cursors, PageTokens, TokenCodec, aware_time, uuid_value
from server.db.engine import Database, mark_work
from server.db.models import ResultEvent
from server.db.notify import Notifier
from server.errors import BatchTooLarge, InvalidField, Unauthenticated
from server.invoices import queries
from server.invoices.intake import Ingestor
from server.invoices.operator import Operator
from server.invoices.results import read_results, results_topic
from server.settings import Settings

RESULTS_PAGE = 200


class InvoiceService(invoice_service_pb2_grpc.InvoiceServiceServicer):
    """The ERP-facing invoice API."""

    def __init__(
        self,
        db: Database,
        ingestor: Ingestor,
        notifier: Notifier,
        tokens: TokenCodec,
        settings: Settings,
        operator: Operator,
        *,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._db = db
        self._stopping = stopping
        self._operator = operator
        self._ingestor = ingestor
        self._notifier = notifier
        self._settings = settings
        self._cursors = Cursors(tokens, "results")
        self._pages = PageTokens(
            tokens,
            "page",
            lambda p: {"t": p.created_at.isoformat(), "i": str(p.invoice_id)},
            lambda d: queries.ListPosition(aware_time(d["t"]), uuid_value(d["i"])),
        )

    async def _tenant(self) -> TenantProfile:
        tenant = await load_tenant(self._db, current_caller().tenant_id)
        if tenant is None:  # the key outlived its tenant
            raise Unauthenticated("unknown tenant")
        return tenant

    @staticmethod
    def _actor() -> str:
        return f"apikey:{current_caller().key_id}"

    async def SubmitInvoices(
        self,
        request_iterator: AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[invoice_service_pb2.SubmitInvoicesResponse]:
        tenant = await self._tenant()
        async for response in submit_stream(
            request_iterator,
            tenant=tenant,
            ingestor=self._ingestor,
            window_invoices=self._settings.ingest_window_invoices,
            max_per_request=self._settings.max_invoices_per_request,
            actor=self._actor(),
        ):
            yield response

    async def ValidateInvoices(
        self,
        request: invoice_service_pb2.ValidateInvoicesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.ValidateInvoicesResponse:
        limit = self._settings.max_invoices_per_request
        if len(request.invoices) > limit:
            raise BatchTooLarge("invoices", f"a request may hold at most {limit} invoices")
        tenant = await self._tenant()
        invoices = [convert.invoice_to_domain(m) for m in request.invoices]
        verdicts = await self._ingestor.check(tenant, invoices)
        return invoice_service_pb2.ValidateInvoicesResponse(
            results=[
                invoice_service_pb2.ValidationResult(
                    index=i,
                    erp_reference=m.erp_reference,
                    valid=rejection is None,
                    error=convert.rejection_status(rejection, index=i) if rejection else None,
                )
                for i, (m, rejection) in enumerate(zip(request.invoices, verdicts, strict=True))
            ]
        )

    async def GetInvoice(
        self,
        request: invoice_service_pb2.GetInvoiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.GetInvoiceResponse:
        lookup = lookup_from_request(request.invoice_id, request.erp_reference)
        return invoice_service_pb2.GetInvoiceResponse(
            invoice=await self._record(current_caller().tenant_id, lookup)
        )

    async def ListInvoices(
        self,
        request: invoice_service_pb2.ListInvoicesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.ListInvoicesResponse:
        tenant_id = current_caller().tenant_id
        size = page_size(request.page_size, default=50, maximum=500)
        filters = filters_from_request(request)
        after = self._pages.position(tenant_id, request)
        rows = await queries.list_invoices(
            self._db, tenant_id, filters, after=after, limit=size + 1
        )
        rows, next_token = self._pages.page(tenant_id, request, rows, size, queries.position_of)
        return invoice_service_pb2.ListInvoicesResponse(
            invoices=[convert.record_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def StreamResults(
        self,
        request: invoice_service_pb2.StreamResultsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        tenant_id = current_caller().tenant_id
        after = self._cursors.decode(tenant_id, request.cursor)
        topic = results_topic(tenant_id)

        async def read_page(after: int, limit: int) -> list[ResultEvent]:
            # Quiet: a follower re-reads every poll interval; only pages with events count.
            async with self._db.read("results.page", quiet=True) as session:
                page = await read_results(session, tenant_id, after, limit)
                if page:
                    mark_work(session, {"fbrhub.events": len(page)})
                return page

        async def wait_for_news(timeout: float) -> bool:
            return await self._notifier.wait(topic, timeout)

        options = FollowOptions(
            follow=request.follow,
            poll_seconds=self._settings.results_poll_seconds,
            heartbeat_seconds=self._settings.results_heartbeat_seconds,
            announce_caught_up=True,
            stop=self._stopping,
        )
        steps = follow_events(
            read_page, wait_for_news, after=after, page_size=RESULTS_PAGE, options=options
        )
        async for step in steps:
            yield self._result_message(tenant_id, step)

    def _result_message(
        self, tenant_id: uuid.UUID, step: Step[ResultEvent]
    ) -> invoice_service_pb2.StreamResultsResponse:
        message = invoice_service_pb2.StreamResultsResponse(
            cursor=self._cursors.encode(tenant_id, step.after)
        )
        if step.event is None:
            message.heartbeat_time.GetCurrentTime()
        else:
            message.event.CopyFrom(convert.result_to_proto(step.event))
        return message

    async def _record(
        self, tenant_id: uuid.UUID, lookup: queries.InvoiceLookup
    ) -> invoice_pb2.InvoiceRecord:
        detail = await queries.get_invoice(self._db, tenant_id, lookup)
        return convert.record_to_proto(
            detail.invoice, list(detail.attempts), [str(i) for i in detail.debit_note_ids]
        )

    async def ResolveInvoice(
        self,
        request: invoice_service_pb2.ResolveInvoiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.ResolveInvoiceResponse:
        choice = request.WhichOneof("resolution")
        if choice is None or (choice == "release_for_resend" and not request.release_for_resend):
            raise InvalidField("resolution", "set mark_issued or release_for_resend")
        tenant = await self._tenant()
        invoice_id = invoice_id_from_text(request.invoice_id)
        await self._operator.resolve_in_doubt(
            tenant,
            invoice_id,
            fbr_invoice_number=request.mark_issued.fbr_invoice_number
            if choice == "mark_issued"
            else None,
            fbr_dated=request.mark_issued.fbr_dated,
            note=request.note,
            actor=self._actor(),
        )
        record = await self._record(tenant.id, queries.InvoiceLookup(invoice_id=invoice_id))
        return invoice_service_pb2.ResolveInvoiceResponse(invoice=record)

    async def RetryInvoice(
        self,
        request: invoice_service_pb2.RetryInvoiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.RetryInvoiceResponse:
        corrected = (
            convert.invoice_to_domain(request.corrected_invoice)
            if request.HasField("corrected_invoice")
            else None
        )
        tenant = await self._tenant()
        invoice_id = invoice_id_from_text(request.invoice_id)
        await self._operator.retry_rejected(
            tenant, invoice_id, corrected=corrected, note=request.note, actor=self._actor()
        )
        record = await self._record(tenant.id, queries.InvoiceLookup(invoice_id=invoice_id))
        return invoice_service_pb2.RetryInvoiceResponse(invoice=record)

    async def GetPrintData(
        self,
        request: invoice_service_pb2.GetPrintDataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.GetPrintDataResponse:
        lookup = lookup_from_request(request.invoice_id, request.erp_reference)
        facts = await queries.print_facts(self._db, current_caller().tenant_id, lookup)
        return print_data_to_proto(facts)
