"""The shortcuts ingest takes for the usual invoice give the same answers as the long way.

The hub judges each product once per batch, checks a line's text lengths in one pass, skips
reading back ids when a batch was stored whole, and copies rows in binary: each test here
takes the unusual path too and checks that nothing changes in what the ERP is told.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import insert, select, text

from clients.fbr.rules import ValidationContext, Violation, validate_invoice
from server.access.tenants import TenantProfile, load_tenant
from server.api.convert.invoices import ack_to_proto
from server.audit.queries import read_audit_events
from server.audit.trail import event_content, event_hash
from server.audit.verify import verify_chain
from server.db.engine import Database
from server.db.models import Invoice
from server.db.notify import Notifier
from server.invoices import storage
from server.invoices.intake import Ack, AckOutcome, Ingestor
from server.invoices.model import InvoiceError, SubmittedInvoice
from server.invoices.validation import MAX_TEXT_LENGTH
from tests.conftest import Tenant
from tests.helpers import eventually, sample, submitted

TODAY = dt.date(2025, 5, 13)


def _context() -> ValidationContext:
    return ValidationContext(today=TODAY, environment="sandbox", seller_ntn_cnic="8885801")


def _paths(invoice: dict[str, object], context: ValidationContext) -> list[tuple[str, str]]:
    return [(v.fbr_error_code, v.path) for v in validate_invoice(invoice, context)]


def _invoice(*items: dict[str, str], scenario: str = "") -> dict[str, object]:
    invoice = sample("P-1")
    invoice.update(invoice_date=TODAY.isoformat(), scenario_id=scenario, items=list(items))
    return invoice


def test_a_product_judged_before_is_reported_at_each_lines_own_index() -> None:
    line = sample("P-1")["items"][0]
    bad_code = {**line, "hs_code": "85164000"}
    context = _context()
    first = _invoice(bad_code)
    second = _invoice(line, line, bad_code)
    assert _paths(first, context) == [("0019", "items[0].hs_code")]
    # The second invoice meets the same products again, the broken one at another index.
    assert _paths(second, context) == [("0019", "items[2].hs_code")]
    assert _paths(second, context) == _paths(second, _context())


def test_the_same_line_is_judged_again_under_another_scenario_or_province() -> None:
    line = sample("P-1")["items"][0]  # an SN002 line: goods at standard rate
    context = _context()
    assert _paths(_invoice(line, scenario="SN002"), context) == []
    # SN005 needs a reduced-rate sale type: the product verdict of SN002 must not be reused.
    assert ("0204", "items[0].sale_type") in _paths(_invoice(line, scenario="SN005"), context)
    elsewhere = _invoice(line, scenario="SN002")
    elsewhere["seller_province"] = "Atlantis"
    found = _paths(elsewhere, context)
    assert ("0073", "seller_province") in found
    assert found == _paths(elsewhere, _context())


async def _profile(db: Database, tenant: Tenant) -> TenantProfile:
    profile = await load_tenant(db, tenant.id)
    assert profile is not None
    return profile


async def test_long_lines_pass_and_only_an_overlong_field_is_refused(
    db: Database, tenant: Tenant
) -> None:
    ingestor = Ingestor(db, Notifier())
    profile = await _profile(db, tenant)
    long_line = sample("LONG-1")
    # Every field within the limit, the line as a whole far over it.
    long_line["items"][0]["product_description"] = "d" * MAX_TEXT_LENGTH
    long_line["items"][0]["hs_code"] = "8516.4000"
    over = sample("OVER-1")
    last = len(over["items"])
    over["items"].append({**over["items"][0], "product_description": "d" * (MAX_TEXT_LENGTH + 1)})
    fine, refused = await ingestor.check(
        profile, [SubmittedInvoice.from_normalised(i) for i in (long_line, over)]
    )
    assert fine is None
    assert refused is not None
    assert [v.path for v in refused.violations] == [f"items[{last}].product_description"]


async def test_a_reference_stored_by_another_stream_meanwhile_is_a_duplicate(
    db: Database, tenant: Tenant
) -> None:
    """Another transaction stores RACE-1 while this batch is being stored.

    On PostgreSQL the batch looks RACE-1 up before the other transaction commits, so its
    insert waits on the unique index and then skips the row; RACE-1 must come back as a
    DUPLICATE of the other stream's invoice, and RACE-2 be stored. On SQLite writers are
    serialised before the lookup, so the batch simply finds the row: the same answer.
    """
    ingestor = Ingestor(db, Notifier())
    profile = await _profile(db, tenant)
    invoices = [submitted("RACE-1"), submitted("RACE-2")]
    verdict = await ingestor.judge_one(profile, invoices[0])
    other = storage.invoice_row(
        tenant.id,
        storage.Candidate(0, invoices[0], verdict, invoices[0].content_sha256()),
        dt.datetime.now(dt.UTC),
    )
    stored, release = asyncio.Event(), asyncio.Event()

    async def other_stream() -> None:
        async with db.write("test.other_stream") as session:
            await session.execute(insert(Invoice).values(other))
            stored.set()
            await release.wait()

    holder = asyncio.create_task(other_stream())
    await stored.wait()
    batch = asyncio.create_task(ingestor.submit(profile, invoices))
    if db.is_postgres:
        await eventually(lambda: _waiting_on_a_lock(db))
    release.set()
    await holder
    repeat, new = await batch
    assert (repeat.outcome, repeat.invoice_id) == (AckOutcome.DUPLICATE, other["id"])
    assert new.outcome is AckOutcome.ACCEPTED


async def _waiting_on_a_lock(db: Database) -> bool:
    """Whether a session of this database is waiting for a lock (the batch's insert)."""
    async with db.read("test.locks") as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


async def test_stored_invoices_and_their_audit_chain_read_back_as_written(
    db: Database, tenant: Tenant
) -> None:
    ingestor = Ingestor(db, Notifier())
    profile = await _profile(db, tenant)
    # The fixture's tenant.create and apikey.create events come first.
    setup_events = (await verify_chain(db, tenant.id)).checked_count
    invalid = sample("BAD-1")
    invalid["items"][0]["hs_code"] = "85164000"
    acks = await ingestor.submit(
        profile,
        [submitted("OK-1"), SubmittedInvoice.from_normalised(invalid)],
        actor="apikey:test",
    )
    assert [a.outcome for a in acks] == [AckOutcome.ACCEPTED, AckOutcome.REJECTED]
    async with db.read() as session:
        rows = await session.scalars(select(Invoice).where(Invoice.tenant_id == tenant.id))
        stored = {row.erp_reference: row for row in rows}
        events = await read_audit_events(session, tenant.id, setup_events, 10)
    assert stored["OK-1"].payload["items"] == sample("OK-1")["items"]
    assert stored["OK-1"].next_attempt_at is not None
    assert stored["BAD-1"].error is not None
    assert stored["BAD-1"].error["violations"][0]["path"] == "items[0].hs_code"
    assert [e.resource for e in events] == [f"invoices/{a.invoice_id}" for a in acks]
    for event in events:
        assert event.hash == event_hash(event.prev_hash, tenant.id, event_content(event))
    assert (await verify_chain(db, tenant.id)).intact


def test_an_ack_is_numbered_within_its_own_request() -> None:
    problem = Violation("items[0].hs_code", "0019", "bad")
    error = InvoiceError("INVOICE_INVALID", "invoice failed 1 validation check(s)", (problem,))
    ack = Ack(7, "R-7", AckOutcome.REJECTED, uuid.uuid4(), None, error)
    message = ack_to_proto(ack, index=2)
    assert message.index == 2
    assert _fields(message.error) == ["invoices[2].items[0].hs_code"]
    assert ack_to_proto(ack).index == 7
    assert _fields(ack_to_proto(ack).error) == ["invoices[7].items[0].hs_code"]


def _fields(status: status_pb2.Status) -> list[str]:
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields
