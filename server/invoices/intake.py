"""Ingest: validate a batch of invoices and store it in one transaction.

The caller gets one :class:`Ack` per invoice, in order, and only after the transaction
holding the batch has committed. An invoice is idempotent on its ERP reference:

- new reference, valid: stored as QUEUED (the outbox row the forwarder claims);
- new reference, invalid: stored as REJECTED_LOCAL with the violations, so the ERP can see
  what failed (ListInvoices) and resend a corrected invoice under the same reference;
- known reference, same content: DUPLICATE, with the original's id and current state;
- known reference, other content: REJECTED (ERP_REFERENCE_REUSED) unless the stored one was
  REJECTED_LOCAL, in which case the correction replaces it.

The rows themselves and the SQL that stores them are in :mod:`server.invoices.storage`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.rules import Violation
from server.access.tenants import TenantProfile
from server.audit.trail import NewAuditEvent, append_audit_events, audit_topic, invoice_event
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import Invoice, InvoiceState
from server.db.notify import Notifier, publish
from server.invoices.model import InvoiceError, SubmittedInvoice
from server.invoices.reference_data import ReferenceStore
from server.invoices.rejections import RejectionBudget, not_kept
from server.invoices.storage import (
    Candidate,
    StoredInvoice,
    existing_invoices,
    insert_new_invoices,
    invoice_row,
    replace_rejected,
)
from server.invoices.tracing import producer_span
from server.invoices.validation import BatchContext, InvoiceValidator, Verdict, reference_usable
from server.observability import metrics
from server.observability.semconv import OUTBOX_QUEUE, TENANT_ID
from server.observability.tracing import get_tracer

INVOICES_TOPIC = OUTBOX_QUEUE
_tracer = get_tracer(__name__)
PENDING_STATES = (
    InvoiceState.QUEUED.value,
    InvoiceState.SENDING.value,
    InvoiceState.RETRY_WAIT.value,
)


REFERENCE_REUSED = InvoiceError(
    "ERP_REFERENCE_REUSED",
    "ERP reference reused with other content",
    (
        Violation(
            "erp_reference",
            "",
            "This reference was already used for an invoice with different content; use a new "
            "reference, or a debit note to correct an accepted invoice.",
        ),
    ),
)


class AckOutcome(StrEnum):
    """What happened to one submitted invoice."""

    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Ack:
    """The answer for one submitted invoice."""

    index: int
    erp_reference: str
    outcome: AckOutcome
    invoice_id: uuid.UUID | None = None
    state: InvoiceState | None = None
    error: InvoiceError | None = None


class Ingestor:
    """Validates and stores invoice batches for one hub process."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        max_pending: int = 0,
        pending_check_seconds: float = 1.0,
        max_rejected_bytes: int = 0,
        reference: ReferenceStore | None = None,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._clock = clock
        self.validator = InvoiceValidator(db, reference or ReferenceStore(db), clock=clock)
        self._max_pending = max_pending
        self._pending_check_seconds = pending_check_seconds
        self._pending_seen: dict[uuid.UUID, tuple[int, float]] = {}
        self.rejections = RejectionBudget(db, max_rejected_bytes)

    async def pending(self, tenant_id: uuid.UUID) -> int:
        """Invoices of the tenant still waiting for FBR (QUEUED, SENDING, RETRY_WAIT)."""
        async with self._db.read("ingest.pending") as session:
            count = await session.scalar(
                select(func.count()).where(
                    Invoice.tenant_id == tenant_id, Invoice.state.in_(PENDING_STATES)
                )
            )
        return int(count or 0)

    async def wait_for_room(self, tenant: TenantProfile) -> None:
        """Hold ingest while the tenant's backlog is at its limit (``tenant_max_pending``).

        While this waits the stream is not read, so HTTP/2 flow control stops the ERP; it
        resumes by itself as the forwarder drains the backlog. The count is re-read at most
        every ``pending_check_seconds`` (checking every batch would cost a query per batch).
        """
        if self._max_pending <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            count, read_at = self._pending_seen.get(tenant.id, (0, float("-inf")))
            if loop.time() - read_at >= self._pending_check_seconds:
                count = await self.pending(tenant.id)
                self._pending_seen[tenant.id] = (count, loop.time())
            if count < self._max_pending:
                return
            await asyncio.sleep(self._pending_check_seconds)

    async def check(
        self, tenant: TenantProfile, invoices: Sequence[SubmittedInvoice]
    ) -> list[InvoiceError | None]:
        """Validate invoices without storing anything (the ValidateInvoices dry run)."""
        batch = await self.validator.prepare(tenant, invoices)
        return [self.validator.judge(invoice, batch).error for invoice in invoices]

    async def judge_one(self, tenant: TenantProfile, invoice: SubmittedInvoice) -> Verdict:
        """Validate one invoice on its own (an operator's correction)."""
        batch = await self.validator.prepare(tenant, [invoice])
        return self.validator.judge(invoice, batch)

    async def submit(
        self,
        tenant: TenantProfile,
        invoices: Sequence[SubmittedInvoice],
        *,
        actor: str = "system:ingest",
    ) -> list[Ack]:
        """Validate and store a batch in one transaction; acks are valid once this returns.

        Args:
            actor: who submitted (``apikey:<key id>``), for the audit trail.
        """
        with _tracer.start_as_current_span(
            "ingest.validate",
            attributes={TENANT_ID: str(tenant.id), "fbrhub.invoices": len(invoices)},
        ):
            batch = await self.validator.prepare(tenant, invoices)
            acks: dict[int, Ack] = {}
            candidates = self._candidates(invoices, batch, acks)
        await self._keep_within_budget(tenant.id, candidates, acks)
        if candidates:
            await self._store_batch(tenant, list(candidates.values()), actor, acks)
        return _in_order(len(invoices), acks, candidates)

    def _candidates(
        self,
        invoices: Sequence[SubmittedInvoice],
        batch: BatchContext,
        acks: dict[int, Ack],
    ) -> dict[str, Candidate]:
        """Validate the batch; returns what to store, by reference, and acks the rest."""
        candidates: dict[str, Candidate] = {}
        for index, invoice in enumerate(invoices):
            reference = invoice.erp_reference
            verdict = self.validator.judge(invoice, batch)
            if not reference_usable(reference):
                acks[index] = Ack(index, reference, AckOutcome.REJECTED, error=verdict.error)
                continue
            digest = invoice.content_sha256()
            earlier = candidates.get(reference)
            if earlier is not None:
                # The same reference twice in one batch: judged against the first.
                acks[index] = _ack_for_repeat(index, reference, digest, earlier.digest, None, None)
                continue
            candidates[reference] = Candidate(index, invoice, verdict, digest)
        return candidates

    async def _keep_within_budget(
        self, tenant_id: uuid.UUID, candidates: dict[str, Candidate], acks: dict[int, Ack]
    ) -> None:
        """Answer, without storing, the rejections the tenant's budget has no room for."""
        rejected = [c for c in candidates.values() if c.verdict.error is not None]
        if not rejected:
            return
        for c in await self.rejections.over_budget(tenant_id, rejected):
            del candidates[c.reference]
            error = not_kept(c.verdict.error) if c.verdict.error else None
            acks[c.index] = Ack(c.index, c.reference, AckOutcome.REJECTED, error=error)

    async def _store_batch(
        self,
        tenant: TenantProfile,
        candidates: list[Candidate],
        actor: str,
        acks: dict[int, Ack],
    ) -> None:
        """Store the candidates and their audit events in one transaction; fills ``acks``.

        The transaction is the producer span of the queued invoices
        (:func:`server.invoices.tracing.producer_span`); each invoice keeps its context.
        """
        stored: dict[int, Ack] = {}
        with producer_span(tenant.id) as producer:
            started = time.perf_counter()
            async with self._db.write("ingest.store_batch") as session:
                await self._store(session, tenant.id, candidates, stored, producer.traceparent)
                if any(a.outcome is AckOutcome.ACCEPTED for a in stored.values()):
                    await publish(session, [INVOICES_TOPIC])
                # Every stored state (new, or a corrected resend) is an audit event; last in
                # the transaction, since it holds the tenant's chain head until commit.
                await append_audit_events(
                    session, _stored_events(tenant.id, stored.values(), actor)
                )
            metrics.ingest_commit_duration.record(time.perf_counter() - started)
            queued = [
                a.invoice_id
                for a in stored.values()
                if a.outcome is AckOutcome.ACCEPTED and a.invoice_id is not None
            ]
            producer.queued(queued)
        self._notifier.notify(audit_topic(tenant.id))
        acks.update(stored)
        if queued:
            self._notifier.notify(INVOICES_TOPIC)
            seen = self._pending_seen.get(tenant.id)
            if seen is not None:  # keep the cached backlog honest until the next count
                self._pending_seen[tenant.id] = (seen[0] + len(queued), seen[1])

    async def _store(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID,
        candidates: list[Candidate],
        acks: dict[int, Ack],
        traceparent: str | None,
    ) -> None:
        """Judge candidates against what is stored, store the new ones; fills ``acks``."""
        now = self._clock()
        postgres = self._db.is_postgres
        references = [c.reference for c in candidates]
        existing = await existing_invoices(session, tenant_id, references, postgres=postgres)
        new: list[Candidate] = []
        for c in candidates:
            row = existing.get(c.reference)
            if row is None:
                new.append(c)
            elif row.state == InvoiceState.REJECTED_LOCAL and row.content_sha256 != c.digest:
                # A corrected resend of a locally rejected invoice replaces it.
                await replace_rejected(session, row.id, tenant_id, c, now, traceparent)
                acks[c.index] = _ack_for_new(c, row.id)
            elif row.state == InvoiceState.REJECTED_LOCAL:
                # Resent unchanged after a local rejection: still rejected, same reasons.
                acks[c.index] = _ack_for_new(c, row.id)
            else:
                acks[c.index] = _ack_against(c, row)
        if new:
            await self._insert_new(session, tenant_id, new, now, acks, traceparent)

    async def _insert_new(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID,
        new: list[Candidate],
        now: dt.datetime,
        acks: dict[int, Ack],
        traceparent: str | None,
    ) -> None:
        """Insert candidates with new references; fills ``acks``."""
        postgres = self._db.is_postgres
        rows = [invoice_row(tenant_id, c, now, traceparent) for c in new]
        inserted = await insert_new_invoices(session, rows, postgres=postgres)
        lost: list[Candidate] = []
        for c, row_values in zip(new, rows, strict=True):
            if row_values["id"] in inserted:
                acks[c.index] = _ack_for_new(c, row_values["id"])
            else:
                lost.append(c)
        if lost:
            # Another stream stored the same reference concurrently: judge against it.
            references = [c.reference for c in lost]
            raced = await existing_invoices(session, tenant_id, references, postgres=postgres)
            for c in lost:
                acks[c.index] = _ack_against(c, raced[c.reference])


def _ack_for_new(c: Candidate, invoice_id: uuid.UUID) -> Ack:
    """The ack of an invoice stored under a new (or locally rejected) reference."""
    if c.verdict.error is None:
        return Ack(c.index, c.reference, AckOutcome.ACCEPTED, invoice_id, InvoiceState.QUEUED)
    return Ack(
        c.index,
        c.reference,
        AckOutcome.REJECTED,
        invoice_id,
        InvoiceState.REJECTED_LOCAL,
        c.verdict.error,
    )


def _ack_against(c: Candidate, stored: StoredInvoice) -> Ack:
    """The ack of a candidate whose reference is already stored (and not replaceable)."""
    return _ack_for_repeat(
        c.index, c.reference, c.digest, stored.content_sha256, stored.id, InvoiceState(stored.state)
    )


def _ack_for_repeat(
    index: int,
    reference: str,
    digest: str,
    stored_digest: str,
    invoice_id: uuid.UUID | None,
    state: InvoiceState | None,
) -> Ack:
    """DUPLICATE if the content is the same as what the reference holds, else REJECTED."""
    if digest == stored_digest:
        return Ack(index, reference, AckOutcome.DUPLICATE, invoice_id, state)
    return Ack(index, reference, AckOutcome.REJECTED, invoice_id, state, REFERENCE_REUSED)


def _stored_events(tenant_id: uuid.UUID, acks: Iterable[Ack], actor: str) -> list[NewAuditEvent]:
    """The audit events of the invoices the batch stored (queued or rejected locally)."""
    return [
        invoice_event(
            tenant_id,
            ack.invoice_id,
            "queued" if ack.outcome is AckOutcome.ACCEPTED else "rejected_local",
            actor=actor,
        )
        for ack in acks
        if ack.invoice_id is not None
        and ack.state in (InvoiceState.QUEUED, InvoiceState.REJECTED_LOCAL)
        and ack.outcome is not AckOutcome.DUPLICATE
        and (ack.error is None or ack.error.reason == "INVOICE_INVALID")
    ]


def _in_order(count: int, acks: dict[int, Ack], candidates: dict[str, Candidate]) -> list[Ack]:
    """The acks in submission order; repeats within the batch point at the first's stored id."""
    result = []
    for index in range(count):
        ack = acks[index]
        first_stored = candidates.get(ack.erp_reference)
        if ack.outcome is AckOutcome.DUPLICATE and ack.invoice_id is None and first_stored:
            first = acks[first_stored.index]
            ack = Ack(index, ack.erp_reference, ack.outcome, first.invoice_id, first.state)
        result.append(ack)
    return result
