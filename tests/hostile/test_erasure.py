"""Erasure past retention erases at once, instead of answering a date already past."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
from sqlalchemy import select, update

from fbrhub.v1 import privacy_service_pb2, privacy_service_pb2_grpc
from server.access.tenants import load_tenant
from server.db.engine import Database
from server.db.models import AuditEvent, Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.intake import Ingestor
from server.invoices.model import SubmittedInvoice
from tests.conftest import RoleKeys
from tests.helpers import sample

BUYER = "3740599999991"


async def _accepted(db: Database, tenant_id: uuid.UUID, reference: str, age_days: int) -> uuid.UUID:
    profile = await load_tenant(db, tenant_id)
    assert profile is not None
    invoice = sample(reference)
    invoice.update(buyer_ntn_cnic=BUYER, buyer_registration_type="Registered")
    (ack,) = await Ingestor(db, Notifier()).submit(
        profile, [SubmittedInvoice.from_normalised(invoice)]
    )
    assert ack.invoice_id is not None
    received = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    async with db.write("test.age") as session:
        await session.execute(
            update(Invoice)
            .where(Invoice.id == ack.invoice_id)
            .values(state=InvoiceState.ACCEPTED.value, created_at=received)
        )
    return ack.invoice_id


async def test_an_invoice_past_retention_is_deleted_by_erasure_and_audited(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    old = await _accepted(db, role_keys.tenant_id, "OLD-7Y", age_days=7 * 366)
    recent = await _accepted(db, role_keys.tenant_id, "RECENT", age_days=30)
    privacy = privacy_service_pb2_grpc.PrivacyServiceStub(gov_channel)
    subject = privacy_service_pb2.DataSubject(buyer_ntn_cnic=BUYER)
    officer = role_keys.metadata("privacy_officer")

    preview = await privacy.ErasePersonalData(
        privacy_service_pb2.ErasePersonalDataRequest(subject=subject, request_id="e-1"),
        metadata=officer,
    )
    actions = {item.resource: item.action for item in preview.items}
    assert actions[f"invoices/{old}"] == privacy_service_pb2.ERASURE_ACTION_DELETED
    assert actions[f"invoices/{recent}"] == privacy_service_pb2.ERASURE_ACTION_RETAINED
    now = dt.datetime.now(dt.UTC)
    for item in preview.items:
        if item.HasField("retained_until"):
            assert item.retained_until.ToDatetime(dt.UTC) > now  # never a date already past

    forced = await privacy.ErasePersonalData(
        privacy_service_pb2.ErasePersonalDataRequest(
            subject=subject, force=True, reason="subject asked", request_id="e-2"
        ),
        metadata=officer,
    )
    assert not forced.dry_run
    async with db.read("test.after") as session:
        assert await session.get(Invoice, old) is None
        assert await session.get(Invoice, recent) is not None
        purged = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "invoice.purged",
                    AuditEvent.resource == f"invoices/{old}",
                )
            )
        ).all()
    assert len(purged) == 1 and purged[0].details["reason"] == "erasure past retention"
