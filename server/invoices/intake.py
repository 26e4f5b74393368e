"""Ingest: validate a batch of invoices and store it in one transaction (DESIGN §2.1-2.2).

The caller gets one :class:`Ack` per invoice, in order, and only after the transaction
holding the batch has committed. An invoice is idempotent on its ERP reference:

- new reference, valid: stored as QUEUED (the outbox row the forwarder claims);
- new reference, invalid: stored as REJECTED_LOCAL with the violations, so the ERP can see
  what failed (ListInvoices) and resend a corrected invoice under the same reference;
- known reference, same content: DUPLICATE, with the original's id and current state;
- known reference, other content: REJECTED (ERP_REFERENCE_REUSED) unless the stored one was
  REJECTED_LOCAL, in which case the correction replaces it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson
from sqlalchemy import String, Table, any_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.payload import NormalisedInvoice
from server.access.tenants import TenantProfile
from server.audit.trail import append_audit_events, audit_topic, invoice_event
from server.db.bulk import copy_rows
from server.db.engine import Database
from server.db.models import Invoice, InvoiceState
from server.db.notify import Notifier, publish
from server.errors import FieldProblem
from server.invoices.clock import utcnow
from server.invoices.reference_data import ReferenceStore
from server.invoices.validation import (
    MAX_REFERENCE_LENGTH,
    InvoiceValidator,
    Rejection,
    channel_of,
    without_reference,
)

INVOICES_TOPIC = "invoices"
PENDING_STATES = (
    InvoiceState.QUEUED.value,
    InvoiceState.SENDING.value,
    InvoiceState.RETRY_WAIT.value,
)
_REFERENCE_ARRAY = postgresql.ARRAY(String)


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
    rejection: Rejection | None = None


def content_sha256(invoice: NormalisedInvoice) -> str:
    """Fingerprint of what the ERP submitted (the seller block is the tenant's, not theirs)."""
    return hashlib.sha256(orjson.dumps(invoice, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _parse_date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class _Stored:
    id: uuid.UUID
    content_sha256: str
    state: str


@dataclass
class _Candidate:
    index: int
    reference: str
    submitted: NormalisedInvoice
    payload: NormalisedInvoice
    digest: str
    rejection: Rejection | None
    original_id: uuid.UUID | None = None


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
        reference: ReferenceStore | None = None,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._clock = clock
        self.validator = InvoiceValidator(db, reference or ReferenceStore(db), clock=clock)
        self._max_pending = max_pending
        self._pending_check_seconds = pending_check_seconds
        self._pending_seen: dict[uuid.UUID, tuple[int, float]] = {}

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
        self, tenant: TenantProfile, invoices: Sequence[NormalisedInvoice]
    ) -> list[Rejection | None]:
        """Validate invoices without storing anything (the ValidateInvoices dry run)."""
        batch = await self.validator.prepare(tenant, invoices)
        return [self.validator.validate(invoice, batch) for invoice in invoices]

    async def validate_one(
        self, tenant: TenantProfile, invoice: NormalisedInvoice
    ) -> Rejection | None:
        """Validate one invoice (with ``erp_reference``) for ``tenant``."""
        (verdict,) = await self.check(tenant, [invoice])
        return verdict

    async def submit(
        self,
        tenant: TenantProfile,
        invoices: Sequence[NormalisedInvoice],
        *,
        actor: str = "system:ingest",
    ) -> list[Ack]:
        """Validate and store a batch in one transaction; acks are valid once this returns.

        Args:
            actor: who submitted (``apikey:<key id>``), for the audit trail.
        """
        batch = await self.validator.prepare(tenant, invoices)
        acks: dict[int, Ack] = {}
        candidates: dict[str, _Candidate] = {}
        for index, invoice in enumerate(invoices):
            reference = invoice.get("erp_reference", "")
            payload = self.validator.stored_payload(tenant, invoice)
            rejection = self.validator.validate(invoice, batch, payload=payload)
            if not reference or len(reference) > MAX_REFERENCE_LENGTH:
                assert rejection is not None
                acks[index] = Ack(index, reference, AckOutcome.REJECTED, rejection=rejection)
                continue
            submitted = without_reference(invoice)
            digest = content_sha256(submitted)
            earlier = candidates.get(reference)
            if earlier is not None:
                # The same reference twice in one batch: judged against the first.
                acks[index] = self._repeat(index, reference, digest, earlier.digest, None, None)
                continue
            candidates[reference] = _Candidate(
                index,
                reference,
                submitted,
                payload,
                digest,
                rejection,
                None if rejection else self.validator.original_of(invoice, batch),
            )

        if candidates:
            async with self._db.write("ingest.store_batch") as session:
                stored = await self._store(session, tenant.id, list(candidates.values()))
                if any(a.outcome is AckOutcome.ACCEPTED for a in stored.values()):
                    await publish(session, [INVOICES_TOPIC])
                # Every stored state (new, or a corrected resend) is an audit event; last in
                # the transaction, since it holds the tenant's chain head until commit.
                await append_audit_events(
                    session,
                    [
                        invoice_event(
                            tenant.id,
                            ack.invoice_id,
                            "queued" if ack.outcome is AckOutcome.ACCEPTED else "rejected_local",
                            actor=actor,
                        )
                        for ack in stored.values()
                        if ack.invoice_id is not None
                        and ack.state in (InvoiceState.QUEUED, InvoiceState.REJECTED_LOCAL)
                        and ack.outcome is not AckOutcome.DUPLICATE
                        and (ack.rejection is None or ack.rejection.reason == "INVOICE_INVALID")
                    ],
                )
            self._notifier.notify(audit_topic(tenant.id))
            acks.update(stored)
            queued = sum(a.outcome is AckOutcome.ACCEPTED for a in stored.values())
            if queued:
                self._notifier.notify(INVOICES_TOPIC)
                seen = self._pending_seen.get(tenant.id)
                if seen is not None:  # keep the cached backlog honest until the next count
                    self._pending_seen[tenant.id] = (seen[0] + queued, seen[1])

        # Repeats within the batch point at the first occurrence's stored id and state.
        result = []
        for index in range(len(invoices)):
            ack = acks[index]
            if ack.outcome is AckOutcome.DUPLICATE and ack.invoice_id is None:
                first = acks[candidates[ack.erp_reference].index]
                ack = Ack(index, ack.erp_reference, ack.outcome, first.invoice_id, first.state)
            result.append(ack)
        return result

    def _repeat(
        self,
        index: int,
        reference: str,
        digest: str,
        stored_digest: str,
        invoice_id: uuid.UUID | None,
        state: InvoiceState | None,
    ) -> Ack:
        if digest == stored_digest:
            return Ack(index, reference, AckOutcome.DUPLICATE, invoice_id, state)
        problem = FieldProblem(
            path="erp_reference",
            message="This reference was already used for an invoice with different content; "
            "use a new reference, or a debit note to correct an accepted invoice.",
        )
        rejection = Rejection(
            "ERP_REFERENCE_REUSED", "ERP reference reused with other content", (problem,)
        )
        return Ack(index, reference, AckOutcome.REJECTED, invoice_id, state, rejection)

    def _row(self, tenant_id: uuid.UUID, c: _Candidate, now: dt.datetime) -> dict[str, Any]:
        valid = c.rejection is None
        pos = channel_of(c.submitted) == "pos"
        return {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "erp_reference": c.reference,
            "content_sha256": c.digest,
            "channel": "pos" if pos else "di",
            "state": InvoiceState.QUEUED if valid else InvoiceState.REJECTED_LOCAL,
            "invoice_type": f"POS {c.submitted.get('invoice_type', '')}"[:16]
            if pos
            else c.submitted.get("invoice_type", "")[:16],
            "invoice_date": _parse_date(
                c.submitted.get("date_time", "")[:10]
                if pos
                else c.submitted.get("invoice_date", "")
            ),
            "original_invoice_id": c.original_id,
            "payload": c.payload,
            "error": None if valid else c.rejection.to_json(),  # type: ignore[union-attr]
            "attempt_count": 0,
            "next_attempt_at": now if valid else None,
            "created_at": now,
            "updated_at": now,
        }

    def _ack_for_new(self, c: _Candidate, invoice_id: uuid.UUID) -> Ack:
        if c.rejection is None:
            return Ack(c.index, c.reference, AckOutcome.ACCEPTED, invoice_id, InvoiceState.QUEUED)
        return Ack(
            c.index,
            c.reference,
            AckOutcome.REJECTED,
            invoice_id,
            InvoiceState.REJECTED_LOCAL,
            c.rejection,
        )

    async def _store(
        self, session: AsyncSession, tenant_id: uuid.UUID, candidates: list[_Candidate]
    ) -> dict[int, Ack]:
        now = self._clock()
        acks: dict[int, Ack] = {}
        existing = await self._existing(session, tenant_id, [c.reference for c in candidates])
        new: list[_Candidate] = []
        for c in candidates:
            row = existing.get(c.reference)
            if row is None:
                new.append(c)
            elif row.state != InvoiceState.REJECTED_LOCAL or row.content_sha256 == c.digest:
                if row.state == InvoiceState.REJECTED_LOCAL:
                    # Resent unchanged after a local rejection: still rejected, same reasons.
                    acks[c.index] = self._ack_for_new(c, row.id)
                else:
                    acks[c.index] = self._repeat(
                        c.index,
                        c.reference,
                        c.digest,
                        row.content_sha256,
                        row.id,
                        InvoiceState(row.state),
                    )
            else:
                # A corrected resend of a locally rejected invoice replaces it.
                values = self._row(tenant_id, c, now)
                for key in ("id", "tenant_id", "erp_reference", "created_at"):
                    values.pop(key)
                await session.execute(update(Invoice).where(Invoice.id == row.id).values(values))
                acks[c.index] = self._ack_for_new(c, row.id)
        if new:
            rows = [self._row(tenant_id, c, now) for c in new]
            inserted = await self._insert_new(session, rows)
            lost: list[_Candidate] = []
            for c, row_values in zip(new, rows, strict=True):
                if row_values["id"] in inserted:
                    acks[c.index] = self._ack_for_new(c, row_values["id"])
                else:
                    lost.append(c)
            if lost:
                # Another stream stored the same reference concurrently: judge against it.
                raced = await self._existing(session, tenant_id, [c.reference for c in lost])
                for c in lost:
                    row = raced[c.reference]
                    acks[c.index] = self._repeat(
                        c.index,
                        c.reference,
                        c.digest,
                        row.content_sha256,
                        row.id,
                        InvoiceState(row.state),
                    )
        return acks

    async def _existing(
        self, session: AsyncSession, tenant_id: uuid.UUID, references: list[str]
    ) -> dict[str, _Stored]:
        if not references:
            return {}
        # On PostgreSQL one array parameter, not an IN list of thousands: the statement
        # text stays the same whatever the batch size, so neither SQLAlchemy nor psycopg
        # has to render and parse thousands of placeholders per batch.
        matches = (
            Invoice.erp_reference == any_(bindparam("references", references, _REFERENCE_ARRAY))
            if self._db.is_postgres
            else Invoice.erp_reference.in_(references)
        )
        rows = await session.execute(
            select(Invoice.id, Invoice.erp_reference, Invoice.content_sha256, Invoice.state).where(
                Invoice.tenant_id == tenant_id, matches
            )
        )
        return {row.erp_reference: _Stored(row.id, row.content_sha256, row.state) for row in rows}

    async def _insert_new(
        self, session: AsyncSession, rows: list[dict[str, Any]]
    ) -> set[uuid.UUID]:
        """Insert new invoices, skipping references another stream stored meanwhile."""
        if self._db.is_postgres:
            return await _copy_insert_postgres(session, rows)
        table = cast(Table, Invoice.__table__)
        statement = (
            sqlite.insert(table)
            .on_conflict_do_nothing(index_elements=["tenant_id", "erp_reference"])
            .returning(table.c.id)
        )
        result = await session.execute(statement, rows)
        return set(result.scalars())


_JSON_COLUMNS = frozenset({"payload", "error"})
_STAGE = "ingest_stage"


async def _copy_insert_postgres(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> set[uuid.UUID]:
    """COPY the batch into a per-connection staging table, then move it in one statement.

    COPY is several times faster than multi-row INSERT (research/perf-anchors.md §b), but
    cannot skip conflicts itself; ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``
    from the staging table keeps ingest idempotent under concurrent streams.
    """
    # The columns are exactly the keys Ingestor._row builds, so the two cannot drift apart.
    columns = tuple(rows[0])
    column_list = ", ".join(columns)
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    async with driver.cursor() as cursor:
        await cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
            f"(LIKE invoices INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await copy_rows(session, _STAGE, rows, json_columns=_JSON_COLUMNS)
        await cursor.execute(
            f"INSERT INTO invoices ({column_list}) SELECT {column_list} FROM {_STAGE} "
            "ON CONFLICT (tenant_id, erp_reference) DO NOTHING RETURNING id"
        )
        if cursor.rowcount == len(rows):
            # The usual case, nothing stored meanwhile: no need to read back every id.
            inserted = {row["id"] for row in rows}
        else:
            inserted = {row[0] for row in await cursor.fetchall()}
        await cursor.execute(f"TRUNCATE {_STAGE}")
    return inserted
