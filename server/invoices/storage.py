"""Storage of an ingested batch: the rows, the lookup of known references, the inserts.

These run inside the ingest transaction; deciding what each invoice's ack says is the
:class:`~server.invoices.intake.Ingestor`'s job. New invoices are inserted so that a
reference another stream stored meanwhile is skipped, not an error: on PostgreSQL by
``COPY`` into a staging table and one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, on
SQLite by ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import String, Table, any_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.channels import Channel
from server.db.bulk import copy_rows
from server.db.models import Invoice, InvoiceState
from server.invoices.model import SubmittedInvoice
from server.invoices.rejections import excerpt
from server.invoices.validation import Verdict

_REFERENCE_ARRAY = postgresql.ARRAY(String)
_JSON_COLUMNS = frozenset({"payload", "error"})
_STAGE = "ingest_stage"


@dataclass(frozen=True)
class StoredInvoice:
    """What ingest needs to know of an invoice already stored under a reference."""

    id: uuid.UUID
    content_sha256: str
    state: str


@dataclass
class Candidate:
    """A submitted invoice with a usable reference, first of its reference in the batch.

    Attributes:
        index: its position in the submitted batch.
        invoice: what the ERP sent.
        verdict: what validation says of it (payload to store, error, debit-note original).
        digest: fingerprint of what was submitted.
    """

    index: int
    invoice: SubmittedInvoice
    verdict: Verdict
    digest: str

    @property
    def reference(self) -> str:
        """The ERP reference."""
        return self.invoice.erp_reference


def _parse_date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def invoice_row(
    tenant_id: uuid.UUID, c: Candidate, now: dt.datetime, traceparent: str | None = None
) -> dict[str, Any]:
    """The invoices row of a candidate: QUEUED if valid, REJECTED_LOCAL otherwise.

    A rejected invoice keeps only an excerpt of its payload (:mod:`server.invoices.rejections`).

    Args:
        traceparent: the ingest span that queues it, which its delivery attempts link to.
    """
    valid = c.verdict.error is None
    body = c.invoice.body
    pos = c.invoice.channel is Channel.POS
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "erp_reference": c.reference,
        "content_sha256": c.digest,
        "channel": c.invoice.channel.value,
        "state": InvoiceState.QUEUED if valid else InvoiceState.REJECTED_LOCAL,
        "invoice_type": f"POS {body.get('invoice_type', '')}"[:16]
        if pos
        else body.get("invoice_type", "")[:16],
        "invoice_date": _parse_date(
            body.get("date_time", "")[:10] if pos else body.get("invoice_date", "")
        ),
        "original_invoice_id": c.verdict.original_id,
        "payload": c.verdict.payload if valid else excerpt(c.verdict.payload),
        "error": None if c.verdict.error is None else c.verdict.error.to_json(),
        "attempt_count": 0,
        "next_attempt_at": now if valid else None,
        "created_at": now,
        "updated_at": now,
        "traceparent": traceparent,
    }


async def existing_invoices(
    session: AsyncSession, tenant_id: uuid.UUID, references: list[str], *, postgres: bool
) -> dict[str, StoredInvoice]:
    """The tenant's stored invoices under any of ``references``, by reference."""
    if not references:
        return {}
    # On PostgreSQL one array parameter, not an IN list of thousands: the statement
    # text stays the same whatever the batch size, so neither SQLAlchemy nor psycopg
    # has to render and parse thousands of placeholders per batch.
    matches = (
        Invoice.erp_reference == any_(bindparam("references", references, _REFERENCE_ARRAY))
        if postgres
        else Invoice.erp_reference.in_(references)
    )
    rows = await session.execute(
        select(Invoice.id, Invoice.erp_reference, Invoice.content_sha256, Invoice.state).where(
            Invoice.tenant_id == tenant_id, matches
        )
    )
    return {row.erp_reference: StoredInvoice(row.id, row.content_sha256, row.state) for row in rows}


async def replace_rejected(
    session: AsyncSession,
    invoice_id: uuid.UUID,
    tenant_id: uuid.UUID,
    c: Candidate,
    now: dt.datetime,
    traceparent: str | None = None,
) -> None:
    """Overwrite a locally rejected invoice with its corrected resend (same id and reference)."""
    values = invoice_row(tenant_id, c, now, traceparent)
    for key in ("id", "tenant_id", "erp_reference", "created_at"):
        values.pop(key)
    await session.execute(update(Invoice).where(Invoice.id == invoice_id).values(values))


async def insert_new_invoices(
    session: AsyncSession, rows: list[dict[str, Any]], *, postgres: bool
) -> set[uuid.UUID]:
    """Insert new invoices, skipping references another stream stored meanwhile.

    Returns:
        The ids of the rows inserted.
    """
    if postgres:
        return await _copy_insert_postgres(session, rows)
    table = cast(Table, Invoice.__table__)
    statement = (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["tenant_id", "erp_reference"])
        .returning(table.c.id)
    )
    result = await session.execute(statement, rows)
    return set(result.scalars())


async def _copy_insert_postgres(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> set[uuid.UUID]:
    """COPY the batch into a per-connection staging table, then move it in one statement.

    COPY is several times faster than multi-row INSERT, but cannot skip conflicts itself;
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` from the staging table keeps
    ingest idempotent under concurrent streams.
    """
    # The columns are exactly the keys invoice_row builds, so the two cannot drift apart.
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
