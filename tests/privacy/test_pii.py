"""No personal data in telemetry: logs, span attributes, metric labels, error metadata.

Distinctive values are planted through a full flow (accounts, invoices to FBR and back,
privacy requests, failing calls, and an ERP that puts a buyer's name in its W3C baggage) and
then searched for everywhere the hub reports to: log records and their JSON lines (every
field), span names, attributes, events, links and statuses, metrics (in memory and as
Prometheus exposes them), the audit trail and error details. The trace ids the API returns
are checked to be ids and nothing else.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from fbrhub.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    invoice_service_pb2,
    invoice_service_pb2_grpc,
    privacy_service_pb2,
    privacy_service_pb2_grpc,
)
from server.db.engine import Database
from server.observability.logs import JsonFormatter, inject_trace_context
from tests.conftest import MetricReaders, RoleKeys
from tests.helpers import sample, to_proto

BUYER_CNIC = "3740577777771"
BUYER_NAME = "Qudsia Plantedbuyer"
BUYER_ADDRESS = "42 Zzyzx Lane, Multan"
PERSON_NAME = "Mehwish Plantedperson"
EMAIL = "mehwish.planted@pii-canary.pk"
PHONE = "+92 333 5550199"
BAD_NTN = "12345678901"  # 11 digits: refused, and must not be echoed
PLANTED = (BUYER_CNIC, BUYER_NAME, BUYER_ADDRESS, PERSON_NAME, EMAIL, PHONE, BAD_NTN)


async def test_planted_personal_data_never_reaches_logs_spans_metrics_or_errors(
    gov_channel: grpc.aio.Channel,
    role_keys: RoleKeys,
    db: Database,
    caplog: pytest.LogCaptureFixture,
    traced: InMemorySpanExporter,
    metric_readers: MetricReaders,
) -> None:
    caplog.set_level(logging.DEBUG)
    inject_trace_context()
    json_lines = io.StringIO()
    json_handler = logging.StreamHandler(json_lines)
    json_handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(json_handler)
    errors: list[str] = []
    admin = admin_service_pb2_grpc.AdminServiceStub(gov_channel)
    privacy = privacy_service_pb2_grpc.PrivacyServiceStub(gov_channel)
    invoices = invoice_service_pb2_grpc.InvoiceServiceStub(gov_channel)
    po = role_keys.metadata("privacy_officer")

    account = await admin.CreateAccount(
        admin_service_pb2.CreateAccountRequest(
            username="planted",
            full_name=PERSON_NAME,
            email=EMAIL,
            phone=PHONE,
            password="planted password 123",
            role=admin_service_pb2.ROLE_ERP,
        ),
        metadata=role_keys.metadata("admin"),
    )
    invoice = sample("PII-1")
    invoice.update(
        buyer_ntn_cnic=BUYER_CNIC,
        buyer_business_name=BUYER_NAME,
        buyer_address=BUYER_ADDRESS,
        buyer_registration_type="Registered",
    )
    broken = sample("PII-2")
    broken.update(buyer_ntn_cnic=BUYER_CNIC, buyer_business_name=BUYER_NAME)
    broken["items"][0]["hs_code"] = "bad"

    # The error paths of text no database can hold and of numbers out of every bound.
    with_nul = sample("PII-3")
    with_nul.update(
        buyer_ntn_cnic=BUYER_CNIC,
        buyer_business_name=BUYER_NAME + "\x00",
        buyer_address=BUYER_ADDRESS,
        buyer_registration_type="Registered",
        invoice_type="Debit Note",
        invoice_ref_no=BUYER_CNIC + "\x00",
    )
    overflow = sample("PII-4")
    overflow.update(buyer_ntn_cnic=BUYER_CNIC, buyer_business_name=BUYER_NAME)
    overflow["items"][0]["quantity"] = "9e999999"
    overflow["items"][0]["value_sales_excluding_st"] = "1e1000000"
    planted = [to_proto(x) for x in (invoice, broken, with_nul, overflow)]

    async def requests() -> AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest]:
        yield invoice_service_pb2.SubmitInvoicesRequest(invoices=planted)

    # An ERP's baggage is read with its trace context; it must never be copied anywhere.
    erp = (
        *role_keys.metadata("erp"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("baggage", f"buyer={BUYER_NAME.replace(' ', '%20')},email={EMAIL}"),
    )
    acks = [a async for r in invoices.SubmitInvoices(requests(), metadata=erp) for a in r.acks]
    assert len(acks) == 4
    errors += [str(a.error) for a in acks]
    checked = await invoices.ValidateInvoices(
        invoice_service_pb2.ValidateInvoicesRequest(invoices=planted),
        metadata=role_keys.metadata("erp"),
    )
    errors += [str(r.error) for r in checked.results]
    assert [r.valid for r in checked.results] == [True, False, False, False]
    undecodable = invoice_service_pb2.GetInvoiceRequest(erp_reference=BUYER_CNIC + "QQQQ")
    raw = undecodable.SerializeToString().replace(b"QQQQ", b"\xff\xfe\xfd\xfc")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gov_channel.unary_unary(
            "/fbrhub.v1.InvoiceService/GetInvoice", request_serializer=lambda b: b
        )(raw, metadata=role_keys.metadata("erp"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    errors.append(f"{refused.value.details()} {refused.value.trailing_metadata()!r}")
    results = invoices.StreamResults(
        invoice_service_pb2.StreamResultsRequest(follow=True), metadata=role_keys.metadata("erp")
    )
    async with asyncio.timeout(30):
        async for message in results:
            if message.HasField("event"):
                break
    results.cancel()
    record = await invoices.GetInvoice(
        invoice_service_pb2.GetInvoiceRequest(invoice_id=message.event.invoice_id),
        metadata=role_keys.metadata("erp"),
    )
    trace_ids = [message.event.trace_id, record.invoice.trace_id]
    trace_ids += [a.trace_id for a in record.invoice.attempts]
    assert all(re.fullmatch("[0-9a-f]{32}", t) for t in trace_ids), trace_ids

    subject = privacy_service_pb2.DataSubject(buyer_ntn_cnic=BUYER_CNIC)
    exported = [
        m
        async for m in privacy.ExportPersonalData(
            privacy_service_pb2.ExportPersonalDataRequest(subject=subject), metadata=po
        )
    ]
    assert BUYER_NAME.encode() in b"".join(m.json for m in exported)  # the export itself has it
    await privacy.CorrectPersonalData(
        privacy_service_pb2.CorrectPersonalDataRequest(
            subject=privacy_service_pb2.DataSubject(account_id=account.account_id),
            corrections=[privacy_service_pb2.FieldCorrection(field="email", value=EMAIL)],
            request_id=str(uuid.uuid4()),
        ),
        metadata=po,
    )
    await privacy.ErasePersonalData(
        privacy_service_pb2.ErasePersonalDataRequest(
            subject=subject, force=True, request_id=str(uuid.uuid4())
        ),
        metadata=po,
    )
    failing = [
        privacy.ErasePersonalData(
            privacy_service_pb2.ErasePersonalDataRequest(
                subject=privacy_service_pb2.DataSubject(buyer_ntn_cnic=BAD_NTN),
                request_id=str(uuid.uuid4()),
            ),
            metadata=po,
        ),
        privacy.CorrectPersonalData(
            privacy_service_pb2.CorrectPersonalDataRequest(
                subject=privacy_service_pb2.DataSubject(account_id=account.account_id),
                corrections=[privacy_service_pb2.FieldCorrection(field="username", value=EMAIL)],
                request_id=str(uuid.uuid4()),
            ),
            metadata=po,
        ),
        admin.CreateAccount(
            admin_service_pb2.CreateAccountRequest(
                username="planted",
                full_name=PERSON_NAME,
                email=EMAIL,
                password="planted password 123",
                role=admin_service_pb2.ROLE_ERP,
            ),
            metadata=role_keys.metadata("admin"),
        ),
        privacy.ExportPersonalData(
            privacy_service_pb2.ExportPersonalDataRequest(
                subject=privacy_service_pb2.DataSubject(buyer_ntn_cnic=BUYER_CNIC)
            ),
            metadata=role_keys.metadata("erp"),
        ),
        privacy.ExportPersonalData(
            privacy_service_pb2.ExportPersonalDataRequest(
                subject=privacy_service_pb2.DataSubject(buyer_ntn_cnic=BUYER_CNIC + "\x00")
            ),
            metadata=po,
        ),
        invoices.GetInvoice(
            invoice_service_pb2.GetInvoiceRequest(erp_reference=f"{BUYER_NAME}\x00"),
            metadata=role_keys.metadata("erp"),
        ),
    ]
    for call in failing:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            if isinstance(call, grpc.aio.UnaryStreamCall):
                async for _ in call:
                    pass
            else:
                await call
        errors.append(
            f"{error.value.details()} {error.value.debug_error_string()} "
            f"{error.value.trailing_metadata()!r}"
        )
    audit = await audit_service_pb2_grpc.AuditServiceStub(gov_channel).ListAuditEvents(
        audit_service_pb2.ListAuditEventsRequest(page_size=1000),
        metadata=role_keys.metadata("auditor"),
    )
    assert len(audit.events) >= 6

    logging.getLogger().removeHandler(json_handler)
    spans = traced.get_finished_spans()
    assert spans, "the in-memory exporter saw no spans"
    assert any(s.name == "process invoices" for s in spans), "no delivery attempt was traced"
    span_text = " ".join(
        f"{s.name} {dict(s.attributes or {})} {s.status.description} "
        + " ".join(f"{e.name} {dict(e.attributes or {})}" for e in s.events)
        + " ".join(f"{link.context} {dict(link.attributes or {})}" for link in s.links)
        for s in spans
    )
    data = metric_readers.memory.get_metrics_data()
    metric_text = data.to_json() if data is not None else ""
    metric_text += generate_latest(metric_readers.prometheus).decode()
    log_text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    log_text += json_lines.getvalue()
    assert '"invoice_id"' in json_lines.getvalue()  # the id fields were written
    audit_text = str(audit)
    for value in PLANTED:
        assert value not in log_text, f"{value!r} in logs"
        assert value not in span_text, f"{value!r} in span attributes"
        assert value not in metric_text, f"{value!r} in metrics"
        assert value not in audit_text, f"{value!r} in the audit trail"
        for error in errors:
            assert value not in error, f"{value!r} in error details"
