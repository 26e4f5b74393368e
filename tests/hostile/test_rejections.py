"""Rejected invoices cost bounded storage: an excerpt, the errors, and a per-tenant budget."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from fbrhub.v1 import invoice_service_pb2, invoice_service_pb2_grpc
from server.access.tenants import load_tenant
from server.db.engine import Database
from server.db.models import Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.intake import AckOutcome, Ingestor
from server.invoices.model import SubmittedInvoice
from server.invoices.rejections import EXCERPT_CHARS, EXCERPT_LINES, MAX_KEPT_VIOLATIONS
from tests.conftest import Tenant
from tests.helpers import sample, submit, submitted, to_proto, violations


def _stored_size(row: Invoice) -> int:
    return len(orjson.dumps(row.payload)) + len(orjson.dumps(row.error))


async def _rows(db: Database, tenant: Tenant) -> dict[str, Invoice]:
    async with db.read("test.rows") as session:
        rows = (await session.scalars(select(Invoice).where(Invoice.tenant_id == tenant.id))).all()
    return {row.erp_reference: row for row in rows}


async def test_a_huge_rejected_invoice_keeps_an_excerpt_and_its_errors(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub, db: Database, tenant: Tenant
) -> None:
    big_field = sample("BIG-FIELD")
    big_field["buyer_address"] = "x" * 1_000_000
    many_lines = sample("MANY-LINES")
    many_lines["items"] = [{**many_lines["items"][0], "uom": "parsecs"}] * 5000
    (response,) = await submit(invoices, tenant, [to_proto(big_field), to_proto(many_lines)])
    assert {a.outcome for a in response.acks} == {invoice_service_pb2.ACK_OUTCOME_REJECTED}
    # The ERP still learns what failed: the field, and (capped) the lines.
    assert "invoices[0].buyer_address" in {v.field for v in violations(response.acks[0].error)}
    assert len(violations(response.acks[1].error)) == MAX_KEPT_VIOLATIONS
    assert "more omitted" in response.acks[1].error.message
    rows = await _rows(db, tenant)
    big, many = rows["BIG-FIELD"], rows["MANY-LINES"]
    assert big.state == many.state == InvoiceState.REJECTED_LOCAL.value
    assert len(big.payload["buyer_address"]) == EXCERPT_CHARS
    assert len(many.payload["items"]) == EXCERPT_LINES
    assert _stored_size(big) < 20_000 and _stored_size(many) < 40_000
    # An unchanged resend is still recognised (the digest is of what was submitted).
    (again,) = await submit(invoices, tenant, [to_proto(big_field)])
    assert again.acks[0].invoice_id == str(big.id)


async def test_past_the_tenant_budget_rejections_are_answered_but_not_stored(
    db: Database, tenant: Tenant
) -> None:
    profile = await load_tenant(db, tenant.id)
    assert profile is not None
    ingestor = Ingestor(db, Notifier(), max_rejected_bytes=12_000)
    bad = []
    for index in range(30):
        invoice = sample(f"BAD-{index}")
        invoice["items"][0]["uom"] = "parsecs"
        bad.append(SubmittedInvoice.from_normalised(invoice))
    acks = await ingestor.submit(profile, [*bad, submitted("GOOD-1")])
    assert {a.outcome for a in acks[:-1]} == {AckOutcome.REJECTED}
    assert acks[-1].outcome is AckOutcome.ACCEPTED
    kept = [a for a in acks[:-1] if a.invoice_id is not None]
    refused = [a for a in acks[:-1] if a.invoice_id is None]
    assert kept and refused
    assert all(a.error is not None and "not stored" in a.error.message for a in refused)
    assert all(a.error is not None and a.error.violations for a in refused)
    rows = await _rows(db, tenant)
    rejected = [r for r in rows.values() if r.state == InvoiceState.REJECTED_LOCAL.value]
    assert len(rejected) == len(kept)
    assert sum(_stored_size(r) for r in rejected) <= 12_000 * 1.1
    # A later batch finds the budget spent, as read back from the database.
    fresh = Ingestor(db, Notifier(), max_rejected_bytes=12_000)
    (late,) = await fresh.submit(profile, [bad[-1]])
    assert late.invoice_id is None and late.outcome is AckOutcome.REJECTED
