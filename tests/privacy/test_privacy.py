"""PrivacyService: export, correction, erasure under retention, consent, closure, sweeper."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc
import orjson
import pytest
import sqlalchemy as sa

from fbrhub.v1 import admin_service_pb2, admin_service_pb2_grpc, privacy_service_pb2_grpc
from fbrhub.v1 import privacy_service_pb2 as pb
from server.audit.verify import verify_chain
from server.db.engine import Database
from server.db.models import Account, AccountStatus, Invoice, InvoiceState, SupportMessage
from server.privacy.retention import retention_cutoff, sweep
from tests.conftest import RoleKeys, make_role_keys, make_tenant

BUYER = "3520212345671"
NOW = dt.datetime.now(dt.UTC)


async def plant_invoice(
    db: Database,
    tenant_id: uuid.UUID,
    state: InvoiceState,
    *,
    buyer: str = BUYER,
    age_days: int = 1,
) -> uuid.UUID:
    invoice_id = uuid.uuid4()
    when = NOW - dt.timedelta(days=age_days)
    async with db.write() as session:
        session.add(
            Invoice(
                id=invoice_id,
                tenant_id=tenant_id,
                erp_reference=f"REF-{invoice_id.hex[:8]}",
                content_sha256="0" * 64,
                channel="DI",
                state=state,
                invoice_type="Sale Invoice",
                invoice_date=when.date(),
                payload={
                    "buyer_ntn_cnic": buyer,
                    "buyer_business_name": "Zubair Traders",
                    "buyer_address": "7 Anarkali, Lahore",
                    "buyer_province": "PUNJAB",
                    "items": [],
                },
                fbr_invoice_number="8885801DI1234567890123"
                if state == InvoiceState.ACCEPTED
                else None,
                attempt_count=0,
                created_at=when,
                updated_at=when,
            )
        )
    return invoice_id


async def create_account(channel: grpc.aio.Channel, keys: RoleKeys, username: str) -> str:
    reply = await admin_service_pb2_grpc.AdminServiceStub(channel).CreateAccount(
        admin_service_pb2.CreateAccountRequest(
            username=username,
            full_name="Farah Siddiqui",
            email="farah@example.pk",
            phone="+92 321 7654321",
            password="a long enough password",
            role=admin_service_pb2.ROLE_ERP,
            consents=[
                admin_service_pb2.InitialConsent(
                    purpose=admin_service_pb2.CONSENT_PURPOSE_ANALYTICS, granted=True
                )
            ],
        ),
        metadata=keys.metadata("admin"),
    )
    return reply.account_id


def stub(channel: grpc.aio.Channel) -> privacy_service_pb2_grpc.PrivacyServiceStub:
    return privacy_service_pb2_grpc.PrivacyServiceStub(channel)


async def export(
    channel: grpc.aio.Channel, keys: RoleKeys, subject: pb.DataSubject
) -> list[tuple[str, dict[str, Any]]]:
    call = stub(channel).ExportPersonalData(
        pb.ExportPersonalDataRequest(subject=subject, request_id=str(uuid.uuid4())),
        metadata=keys.metadata("privacy_officer"),
    )
    records = [(m.record_type, orjson.loads(m.json)) async for m in call]
    return records


async def test_export_returns_everything_held_about_an_account_and_a_buyer(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    account_id = await create_account(gov_channel, role_keys, "farah")
    async with db.write() as session:
        session.add(
            SupportMessage(
                id=uuid.uuid4(),
                tenant_id=role_keys.tenant_id,
                account_id=uuid.UUID(account_id),
                body="My invoices are late",
                created_at=NOW,
            )
        )
    po = stub(gov_channel)
    md = role_keys.metadata("privacy_officer")
    await po.WithdrawConsent(
        pb.WithdrawConsentRequest(
            account_id=account_id,
            purpose=admin_service_pb2.CONSENT_PURPOSE_ANALYTICS,
            source="web_settings",
            request_id="w1",
        ),
        metadata=md,
    )
    records = await export(gov_channel, role_keys, pb.DataSubject(account_id=account_id))
    kinds = [kind for kind, _ in records]
    assert kinds == ["account", "consent_event", "consent_event", "support_message", "summary"]
    account = records[0][1]
    assert (account["full_name"], account["email"], account["phone"]) == (
        "Farah Siddiqui",
        "farah@example.pk",
        "+92 321 7654321",
    )
    assert "$2b$" not in orjson.dumps(records).decode()  # the hash is never exported
    assert [r["granted"] for k, r in records if k == "consent_event"] == [True, False]
    assert records[3][1]["body"] == "My invoices are late"

    accepted = await plant_invoice(db, role_keys.tenant_id, InvoiceState.ACCEPTED)
    rejected = await plant_invoice(db, role_keys.tenant_id, InvoiceState.REJECTED_LOCAL)
    await plant_invoice(db, role_keys.tenant_id, InvoiceState.ACCEPTED, buyer="1234567")
    await po.CorrectPersonalData(
        pb.CorrectPersonalDataRequest(
            subject=pb.DataSubject(buyer_ntn_cnic=BUYER),
            corrections=[pb.FieldCorrection(field="buyer_address", value="9 Mall Road")],
            request_id="c1",
        ),
        metadata=md,
    )
    buyer_records = await export(gov_channel, role_keys, pb.DataSubject(buyer_ntn_cnic=BUYER))
    invoices = {r["invoice_id"] for k, r in buyer_records if k == "invoice"}
    assert invoices == {str(accepted), str(rejected)}
    annotations = [r for k, r in buyer_records if k == "invoice_annotation"]
    assert len(annotations) == 2 and annotations[0]["corrections"] == {
        "buyer_address": "9 Mall Road"
    }
    assert buyer_records[-1] == (
        "summary",
        {"record_counts": {"invoice": 2, "invoice_annotation": 2}},
    )


async def test_correction_never_alters_accepted_invoices_and_names_the_debit_note(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    accepted = await plant_invoice(db, role_keys.tenant_id, InvoiceState.ACCEPTED)
    request = pb.CorrectPersonalDataRequest(
        subject=pb.DataSubject(buyer_ntn_cnic=BUYER),
        corrections=[pb.FieldCorrection(field="buyer_business_name", value="Zubair & Sons")],
        request_id="fix-1",
    )
    md = role_keys.metadata("privacy_officer")
    reply = await stub(gov_channel).CorrectPersonalData(request, metadata=md)
    assert [(a.invoice_id, a.fbr_accepted) for a in reply.annotations] == [(str(accepted), True)]
    assert "debit note" in reply.legal_route
    async with db.read() as session:
        invoice = await session.get(Invoice, accepted)
    assert invoice is not None and invoice.payload["buyer_business_name"] == "Zubair Traders"
    again = await stub(gov_channel).CorrectPersonalData(request, metadata=md)
    assert again == reply  # replayed, not applied twice
    records = await export(gov_channel, role_keys, pb.DataSubject(buyer_ntn_cnic=BUYER))
    assert sum(k == "invoice_annotation" for k, _ in records) == 1
    reused = pb.CorrectPersonalDataRequest()
    reused.CopyFrom(request)
    reused.subject.buyer_ntn_cnic = "1234567"
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub(gov_channel).CorrectPersonalData(reused, metadata=md)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_erase_is_a_dry_run_by_default_and_keeps_fiscal_records_under_hold(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    accepted = await plant_invoice(db, role_keys.tenant_id, InvoiceState.ACCEPTED)
    rejected = await plant_invoice(db, role_keys.tenant_id, InvoiceState.REJECTED_FBR)
    subject = pb.DataSubject(buyer_ntn_cnic=BUYER)
    md = role_keys.metadata("privacy_officer")
    dry = await stub(gov_channel).ErasePersonalData(
        pb.ErasePersonalDataRequest(subject=subject, request_id="e-dry"), metadata=md
    )
    assert dry.dry_run
    async with db.read() as session:
        untouched = await session.get(Invoice, rejected)
    assert untouched is not None and untouched.payload["buyer_ntn_cnic"] == BUYER

    done = await stub(gov_channel).ErasePersonalData(
        pb.ErasePersonalDataRequest(subject=subject, force=True, request_id="e-1"), metadata=md
    )
    assert not done.dry_run
    verdicts = {i.resource: i for i in done.items}
    assert [(i.resource, i.action) for i in dry.items] == [
        (i.resource, i.action) for i in done.items
    ]
    kept = verdicts[f"invoices/{accepted}"]
    assert kept.action == pb.ERASURE_ACTION_RETAINED
    assert "6 years" in kept.retention_reason
    until = kept.retained_until.ToDatetime(dt.UTC)
    assert until.year - (NOW - dt.timedelta(days=1)).year == 6
    pseudo = verdicts[f"invoices/{rejected}"]
    assert pseudo.action == pb.ERASURE_ACTION_PSEUDONYMISED
    assert "buyer_ntn_cnic" in pseudo.fields
    async with db.read() as session:
        fiscal = await session.get(Invoice, accepted)
        cleaned = await session.get(Invoice, rejected)
    assert fiscal is not None and fiscal.payload["buyer_ntn_cnic"] == BUYER
    assert cleaned is not None and BUYER not in orjson.dumps(cleaned.payload).decode()
    assert "Zubair" not in orjson.dumps(cleaned.payload).decode()
    records = await export(gov_channel, role_keys, subject)
    assert [k for k, _ in records] == ["invoice", "retention_hold", "summary"]

    listed = await stub(gov_channel).ListPrivacyRequests(
        pb.ListPrivacyRequestsRequest(), metadata=md
    )
    kinds = {r.request_id: (r.kind, r.status) for r in listed.requests}
    assert kinds["e-dry"] == (pb.PRIVACY_REQUEST_KIND_ERASE_DRY_RUN, "COMPLETED")
    assert kinds["e-1"] == (pb.PRIVACY_REQUEST_KIND_ERASE, "COMPLETED")
    assert all(BUYER not in str(r) for r in listed.requests)
    assert (await verify_chain(db, role_keys.tenant_id)).intact


async def test_account_erasure_consents_and_closure_with_the_sweeper(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    account_id = await create_account(gov_channel, role_keys, "closing")
    po = stub(gov_channel)
    md = role_keys.metadata("privacy_officer")
    for request_id, granted in (("c1", True), ("c2", False), ("c3", True)):
        call = po.RecordConsent if granted else po.WithdrawConsent
        request_type = pb.RecordConsentRequest if granted else pb.WithdrawConsentRequest
        await call(
            request_type(
                account_id=account_id,
                purpose=admin_service_pb2.CONSENT_PURPOSE_MARKETING,
                source="support_call",
                request_id=request_id,
            ),
            metadata=md,
        )
    consents = await po.ListConsents(pb.ListConsentsRequest(account_id=account_id), metadata=md)
    assert [(c.purpose, c.granted) for c in consents.current] == [
        (admin_service_pb2.CONSENT_PURPOSE_ANALYTICS, True),
        (admin_service_pb2.CONSENT_PURPOSE_MARKETING, True),
    ]
    assert [c.source for c in consents.history] == [
        "signup",
        "support_call",
        "support_call",
        "support_call",
    ]

    closed = await po.CloseAccount(
        pb.CloseAccountRequest(account_id=account_id, request_id="close-1"), metadata=md
    )
    closed_at = closed.close_time.ToDatetime(dt.UTC)
    due = closed.anonymise_by_time.ToDatetime(dt.UTC)
    assert dt.timedelta(0) < due - closed_at <= dt.timedelta(days=90)
    assert (
        await po.CloseAccount(
            pb.CloseAccountRequest(account_id=account_id, request_id="close-1"), metadata=md
        )
        == closed
    )

    early = await sweep(db, retention_years=6, now=due - dt.timedelta(seconds=1))
    assert early.anonymised_accounts == 0
    async with db.read() as session:
        account = await session.get(Account, uuid.UUID(account_id))
    assert account is not None and account.status == AccountStatus.CLOSED
    report = await sweep(db, retention_years=6, now=due)
    assert report.anonymised_accounts == 1
    async with db.read() as session:
        account = await session.get(Account, uuid.UUID(account_id))
    assert account is not None and account.status == AccountStatus.ANONYMISED
    assert (account.full_name, account.email, account.phone, account.password_bcrypt) == (
        "",
        "",
        "",
        "",
    )
    assert "closing" not in account.username
    records = await export(gov_channel, role_keys, pb.DataSubject(account_id=account_id))
    assert [k for k, _ in records] == ["account", "summary"]
    assert (await verify_chain(db, role_keys.tenant_id)).intact


async def test_sweeper_purges_invoices_only_after_retention(
    db: Database, role_keys: RoleKeys
) -> None:
    old = await plant_invoice(db, role_keys.tenant_id, InvoiceState.ACCEPTED, age_days=365 * 6 + 3)
    young = await plant_invoice(db, role_keys.tenant_id, InvoiceState.ACCEPTED, age_days=365 * 5)
    report = await sweep(db, retention_years=6, now=NOW)
    assert report.purged_invoices == 1
    async with db.read() as session:
        assert await session.get(Invoice, old) is None
        assert await session.get(Invoice, young) is not None
    with pytest.raises(ValueError):
        retention_cutoff(NOW, 4)


async def test_subjects_of_another_tenant_look_missing(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    other = await make_tenant(db, "7000006", "sandbox-token-7000006")
    other_keys = await make_role_keys(db, other.id)
    theirs = await create_account(gov_channel, other_keys, "theirs")
    await plant_invoice(db, other.id, InvoiceState.ACCEPTED, buyer="4210198765431")
    md = role_keys.metadata("privacy_officer")
    po = stub(gov_channel)
    missing = str(uuid.uuid4())
    results = []
    for account_id in (theirs, missing):
        calls = [
            po.ListConsents(pb.ListConsentsRequest(account_id=account_id), metadata=md),
            po.CloseAccount(
                pb.CloseAccountRequest(account_id=account_id, request_id=f"x-{account_id}"),
                metadata=md,
            ),
            po.RecordConsent(
                pb.RecordConsentRequest(
                    account_id=account_id,
                    purpose=admin_service_pb2.CONSENT_PURPOSE_MARKETING,
                    source="web",
                    request_id=f"r-{account_id}",
                ),
                metadata=md,
            ),
            po.ErasePersonalData(
                pb.ErasePersonalDataRequest(
                    subject=pb.DataSubject(account_id=account_id), request_id=f"e-{account_id}"
                ),
                metadata=md,
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            results.append((error.value.code(), error.value.details()))
    assert {code for code, _ in results} == {grpc.StatusCode.NOT_FOUND}
    assert results[:4] == results[4:]
    for buyer in ("4210198765431", "4210100000001"):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await export(gov_channel, role_keys, pb.DataSubject(buyer_ntn_cnic=buyer))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert buyer not in str(error.value.trailing_metadata())
    async with db.read() as session:
        their_account = await session.scalar(
            sa.select(Account).where(Account.id == uuid.UUID(theirs))
        )
    assert their_account is not None and their_account.status == AccountStatus.ACTIVE
