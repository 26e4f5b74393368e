"""InvoiceService: protobuf in, domain calls, protobuf out. No business rules here."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from sqlalchemy import and_, or_, select

from clients.fbr.pos.payload import POS_SERVICE_FEE
from clients.fbr.qr import QR_VERSION, print_data
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.access.tenants import TenantProfile, load_tenant
from server.api.convert import invoices as converters
from server.api.errors import FieldProblem, HubError, invalid_argument, not_found
from server.api.ingest_stream import submit_stream
from server.api.interceptor import current_caller
from server.api.tokens import TokenCodec, TokenError
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.intake import Ingestor
from server.invoices.operator import BadFbrNumber, InvoiceNotFound, Operator, WrongState
from server.invoices.results import read_results, results_topic
from server.settings import Settings

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
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
    ) -> None:
        self._db = db
        self._operator = operator
        self._ingestor = ingestor
        self._notifier = notifier
        self._tokens = tokens
        self._settings = settings

    async def _tenant(self) -> TenantProfile:
        tenant = await load_tenant(self._db, current_caller().tenant_id)
        if tenant is None:  # the key outlived its tenant
            raise HubError(grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID", "unknown tenant")
        return tenant

    def _check_batch_size(self, count: int) -> None:
        limit = self._settings.max_invoices_per_request
        if count > limit:
            raise invalid_argument(
                "invoices", f"a request may hold at most {limit} invoices", "BATCH_TOO_LARGE"
            )

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
            actor=f"apikey:{current_caller().key_id}",
        ):
            yield response

    async def ValidateInvoices(
        self,
        request: invoice_service_pb2.ValidateInvoicesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.ValidateInvoicesResponse:
        self._check_batch_size(len(request.invoices))
        tenant = await self._tenant()
        invoices = [converters.invoice_to_domain(m) for m in request.invoices]
        verdicts = await self._ingestor.check(tenant, invoices)
        return invoice_service_pb2.ValidateInvoicesResponse(
            results=[
                invoice_service_pb2.ValidationResult(
                    index=i,
                    erp_reference=m.erp_reference,
                    valid=rejection is None,
                    error=converters.rejection_status(rejection, index=i) if rejection else None,
                )
                for i, (m, rejection) in enumerate(zip(request.invoices, verdicts, strict=True))
            ]
        )

    async def GetInvoice(
        self,
        request: invoice_service_pb2.GetInvoiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.GetInvoiceResponse:
        tenant_id = current_caller().tenant_id
        condition = self._lookup(request.invoice_id, request.erp_reference)
        return invoice_service_pb2.GetInvoiceResponse(
            invoice=await self._record(tenant_id, condition)
        )

    async def ListInvoices(
        self,
        request: invoice_service_pb2.ListInvoicesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.ListInvoicesResponse:
        tenant_id = current_caller().tenant_id
        if request.page_size < 0:
            raise invalid_argument("page_size", "page_size must not be negative")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters: list[Any] = [Invoice.tenant_id == tenant_id]
        if request.states:
            if invoice_pb2.INVOICE_STATE_UNSPECIFIED in request.states:
                raise invalid_argument("states", "INVOICE_STATE_UNSPECIFIED is not a state")
            filters.append(
                Invoice.state.in_([converters.state_from_proto(s) for s in request.states])
            )
        if request.HasField("received_after"):
            filters.append(Invoice.created_at >= request.received_after.ToDatetime(dt.UTC))
        if request.HasField("received_before"):
            filters.append(Invoice.created_at < request.received_before.ToDatetime(dt.UTC))
        for field, op in (("invoice_date_from", "__ge__"), ("invoice_date_to", "__le__")):
            text = getattr(request, field)
            if text:
                try:
                    day = dt.date.fromisoformat(text)
                except ValueError:
                    raise invalid_argument(field, f"{field} must be a date as YYYY-MM-DD") from None
                filters.append(getattr(Invoice.invoice_date, op)(day))
        filters_only = invoice_service_pb2.ListInvoicesRequest()
        filters_only.CopyFrom(request)
        filters_only.ClearField("page_token")
        filters_only.ClearField("page_size")
        fingerprint = hashlib.sha256(
            filters_only.SerializeToString(deterministic=True)
        ).hexdigest()[:16]
        if request.page_token:
            try:
                token = self._tokens.decode("page", tenant_id, request.page_token)
                if token.get("f") != fingerprint:
                    raise TokenError("filters changed")
                last_time = dt.datetime.fromisoformat(token["t"])
                last_id = uuid.UUID(token["i"])
            except (TokenError, KeyError, ValueError):
                raise invalid_argument(
                    "page_token",
                    "page_token is invalid or was made for other filters",
                    "PAGE_TOKEN_INVALID",
                ) from None
            filters.append(
                or_(
                    Invoice.created_at < last_time,
                    and_(Invoice.created_at == last_time, Invoice.id < last_id),
                )
            )
        async with self._db.read("invoice.list") as session:
            rows = list(
                await session.scalars(
                    select(Invoice)
                    .where(*filters)
                    .order_by(Invoice.created_at.desc(), Invoice.id.desc())
                    .limit(page_size + 1)
                )
            )
        next_token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            last = rows[-1]
            next_token = self._tokens.encode(
                "page",
                tenant_id,
                {"f": fingerprint, "t": last.created_at.isoformat(), "i": str(last.id)},
            )
        return invoice_service_pb2.ListInvoicesResponse(
            invoices=[converters.record_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def StreamResults(
        self,
        request: invoice_service_pb2.StreamResultsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        tenant_id = current_caller().tenant_id
        after = 0
        if request.cursor:
            try:
                after = int(self._tokens.decode("results", tenant_id, request.cursor)["s"])
            except (TokenError, KeyError, ValueError, TypeError):
                raise invalid_argument(
                    "cursor", "cursor is invalid or belongs to another tenant", "CURSOR_INVALID"
                ) from None
        topic = results_topic(tenant_id)
        idle = 0.0
        caught_up = False
        while True:
            async with self._db.read("results.page") as session:
                rows = await read_results(session, tenant_id, after, RESULTS_PAGE)
            for row in rows:
                after = row.seq
                yield invoice_service_pb2.StreamResultsResponse(
                    event=converters.result_to_proto(row),
                    cursor=self._tokens.encode("results", tenant_id, {"s": after}),
                )
            if len(rows) == RESULTS_PAGE:
                continue
            if not request.follow:
                return
            if not caught_up:
                # Tell the follower the backlog is drained: from here on it sees live events.
                caught_up = True
                yield self._heartbeat(tenant_id, after)
            if rows:
                idle = 0.0
            # Another process's events carry no in-process signal; the poll interval bounds
            # how late they are seen.
            woke = await self._notifier.wait(topic, self._settings.results_poll_seconds)
            idle = 0.0 if woke else idle + self._settings.results_poll_seconds
            if idle >= self._settings.results_heartbeat_seconds:
                idle = 0.0
                yield self._heartbeat(tenant_id, after)

    def _heartbeat(
        self, tenant_id: uuid.UUID, after: int
    ) -> invoice_service_pb2.StreamResultsResponse:
        heartbeat = invoice_service_pb2.StreamResultsResponse(
            cursor=self._tokens.encode("results", tenant_id, {"s": after})
        )
        heartbeat.heartbeat_time.GetCurrentTime()
        return heartbeat

    async def _record(self, tenant_id: uuid.UUID, condition: Any) -> invoice_pb2.InvoiceRecord:
        """One invoice of the tenant with its attempts; NOT_FOUND if there is none."""
        async with self._db.read("invoice.get") as session:
            row = await session.scalar(
                select(Invoice).where(Invoice.tenant_id == tenant_id, condition)
            )
            if row is None:
                raise not_found("invoice")
            attempts = list(
                await session.scalars(
                    select(DeliveryAttempt)
                    .where(DeliveryAttempt.invoice_id == row.id)
                    .order_by(DeliveryAttempt.number)
                )
            )
            notes = await session.scalars(
                select(Invoice.id)
                .where(Invoice.tenant_id == tenant_id, Invoice.original_invoice_id == row.id)
                .order_by(Invoice.created_at)
            )
            debit_notes = [str(note) for note in notes]
        return converters.record_to_proto(row, attempts, debit_notes)

    async def _decide(self, invoice_id: str, decide: Any) -> invoice_pb2.InvoiceRecord:
        tenant = await self._tenant()
        try:
            parsed = uuid.UUID(invoice_id)
        except ValueError:
            raise not_found("invoice") from None
        try:
            await decide(tenant, parsed)
        except InvoiceNotFound:
            raise not_found("invoice") from None
        except WrongState as exc:
            raise HubError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "INVOICE_STATE_CONFLICT",
                str(exc),
                metadata={"expectedState": exc.expected.value, "actualState": exc.actual},
            ) from None
        except BadFbrNumber as exc:
            raise invalid_argument("mark_issued.fbr_invoice_number", str(exc)) from None
        return await self._record(tenant.id, Invoice.id == parsed)

    async def ResolveInvoice(
        self,
        request: invoice_service_pb2.ResolveInvoiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.ResolveInvoiceResponse:
        choice = request.WhichOneof("resolution")
        if choice is None or (choice == "release_for_resend" and not request.release_for_resend):
            raise invalid_argument("resolution", "set mark_issued or release_for_resend")

        async def decide(tenant: TenantProfile, invoice_id: uuid.UUID) -> None:
            number = request.mark_issued.fbr_invoice_number if choice == "mark_issued" else None
            await self._operator.resolve_in_doubt(
                tenant,
                invoice_id,
                fbr_invoice_number=number,
                fbr_dated=request.mark_issued.fbr_dated,
                note=request.note,
                actor=f"apikey:{current_caller().key_id}",
            )

        record = await self._decide(request.invoice_id, decide)
        return invoice_service_pb2.ResolveInvoiceResponse(invoice=record)

    async def RetryInvoice(
        self,
        request: invoice_service_pb2.RetryInvoiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.RetryInvoiceResponse:
        corrected = (
            converters.invoice_to_domain(request.corrected_invoice)
            if request.HasField("corrected_invoice")
            else None
        )

        async def decide(tenant: TenantProfile, invoice_id: uuid.UUID) -> None:
            if corrected is not None:
                async with self._db.read("invoice.reference") as session:
                    reference = await session.scalar(
                        select(Invoice.erp_reference).where(
                            Invoice.id == invoice_id, Invoice.tenant_id == tenant.id
                        )
                    )
                if reference is None:
                    raise InvoiceNotFound("invoice not found")
                if corrected["erp_reference"] != reference:
                    raise invalid_argument(
                        "corrected_invoice.erp_reference",
                        "the correction must keep the invoice's ERP reference",
                    )
            rejection = await self._operator.retry_rejected(
                tenant,
                invoice_id,
                corrected=corrected,
                note=request.note,
                actor=f"apikey:{current_caller().key_id}",
            )
            if rejection is not None:
                raise HubError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    rejection.reason,
                    rejection.message,
                    problems=[
                        FieldProblem(f"corrected_invoice.{p.path}", p.message, p.fbr_error_code)
                        for p in rejection.problems
                    ],
                    metadata={"violationCount": str(len(rejection.problems))},
                )

        record = await self._decide(request.invoice_id, decide)
        return invoice_service_pb2.RetryInvoiceResponse(invoice=record)

    async def GetPrintData(
        self,
        request: invoice_service_pb2.GetPrintDataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> invoice_service_pb2.GetPrintDataResponse:
        tenant_id = current_caller().tenant_id
        condition = self._lookup(request.invoice_id, request.erp_reference)
        async with self._db.read("invoice.print") as session:
            row = (
                await session.execute(
                    select(
                        Invoice.state,
                        Invoice.channel,
                        Invoice.fbr_invoice_number,
                        Invoice.fbr_dated,
                    ).where(Invoice.tenant_id == tenant_id, condition)
                )
            ).one_or_none()
        if row is None:
            raise not_found("invoice")
        if row.state != InvoiceState.ACCEPTED.value or not row.fbr_invoice_number:
            raise HubError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "INVOICE_NOT_ACCEPTED",
                "print data exists only once FBR has accepted the invoice",
                metadata={"actualState": row.state},
            )
        printed = print_data(row.fbr_invoice_number, row.fbr_dated or "")
        pos = row.channel == "pos"
        return invoice_service_pb2.GetPrintDataResponse(
            fbr_invoice_number=printed.fbr_invoice_number,
            fbr_dated=printed.dated,
            qr_png=printed.qr_png,
            qr_svg=printed.qr_svg,
            qr_version=QR_VERSION,
            qr_error_correction=printed.qr_error_level,
            channel=invoice_pb2.FBR_CHANNEL_POS
            if pos
            else invoice_pb2.FBR_CHANNEL_DIGITAL_INVOICING,
            pos_service_fee=f"{POS_SERVICE_FEE:.2f}" if pos else "",
        )

    @staticmethod
    def _lookup(invoice_id: str, erp_reference: str) -> Any:
        """The WHERE condition for "by id or by ERP reference" requests."""
        if bool(invoice_id) == bool(erp_reference):
            raise invalid_argument("invoice_id", "set exactly one of invoice_id and erp_reference")
        if erp_reference:
            return Invoice.erp_reference == erp_reference
        try:
            return Invoice.id == uuid.UUID(invoice_id)
        except ValueError:
            raise not_found("invoice") from None
