"""Text no database can hold (NUL, invalid UTF-8): refused per field, never INTERNAL.

On PostgreSQL a NUL once made every privacy query of the tenant fail and ended
SubmitInvoices streams; these tests run on both databases.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import status_pb2
from grpc_status import rpc_status

from fbrhub.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    invoice_pb2,
    invoice_service_pb2,
    invoice_service_pb2_grpc,
    privacy_service_pb2,
    privacy_service_pb2_grpc,
)
from tests.conftest import RoleKeys
from tests.helpers import error_reason, proto_invoice, sample, to_proto, violations

MARK = "QQQQMARK"
BAD_UTF8 = b"\xff\xfe\xc3\x28MARK"  # same length as MARK in UTF-8: lengths stay right
assert len(BAD_UTF8) == len(MARK.encode())
SUBMIT = "/fbrhub.v1.InvoiceService/SubmitInvoices"


def _invoice(reference: str, **header: str) -> invoice_pb2.Invoice:
    invoice = sample(reference)
    invoice.update(header)
    return to_proto(invoice)


async def test_a_nul_refuses_only_its_invoice_and_privacy_queries_still_work(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys
) -> None:
    invoices = invoice_service_pb2_grpc.InvoiceServiceStub(gov_channel)
    erp = role_keys.metadata("erp")
    batch = [
        _invoice("NUL-NAME", buyer_business_name="Nul\x00Buyer", buyer_ntn_cnic="3740512345671",
                 buyer_registration_type="Registered"),
        proto_invoice("NUL-FINE"),
    ]  # fmt: skip
    validated = await invoices.ValidateInvoices(
        invoice_service_pb2.ValidateInvoicesRequest(invoices=batch), metadata=erp
    )
    assert [r.valid for r in validated.results] == [False, True]
    paths = {v.field for v in violations(validated.results[0].error)}
    assert "invoices[0].buyer_business_name" in paths

    call = invoices.SubmitInvoices(metadata=erp)
    await call.write(invoice_service_pb2.SubmitInvoicesRequest(invoices=batch))
    first = await call.read()
    # A NUL in the reference: refused, not stored, and the stream goes on.
    await call.write(
        invoice_service_pb2.SubmitInvoicesRequest(
            invoices=[_invoice("NUL\x00REF"), proto_invoice("NUL-AFTER")]
        )
    )
    second = await call.read()
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert [a.outcome for a in first.acks] == [
        invoice_service_pb2.ACK_OUTCOME_REJECTED,
        invoice_service_pb2.ACK_OUTCOME_ACCEPTED,
    ]
    assert [a.outcome for a in second.acks] == [
        invoice_service_pb2.ACK_OUTCOME_REJECTED,
        invoice_service_pb2.ACK_OUTCOME_ACCEPTED,
    ]
    assert second.acks[0].invoice_id == ""
    assert "invoices[0].erp_reference" in {v.field for v in violations(second.acks[0].error)}

    # The tenant's privacy queries by buyer id work (they failed on a stored NUL).
    privacy = privacy_service_pb2_grpc.PrivacyServiceStub(gov_channel)
    subject = privacy_service_pb2.DataSubject(buyer_ntn_cnic="3740512345671")
    officer = role_keys.metadata("privacy_officer")
    exported = privacy.ExportPersonalData(
        privacy_service_pb2.ExportPersonalDataRequest(subject=subject, request_id="x-1"),
        metadata=officer,
    )
    records = [r async for r in exported]
    assert records
    erased = await privacy.ErasePersonalData(
        privacy_service_pb2.ErasePersonalDataRequest(subject=subject, request_id="x-2"),
        metadata=officer,
    )
    assert erased.dry_run


def _raw_stream(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable:
    return channel.stream_stream(
        SUBMIT,
        request_serializer=lambda raw: raw,
        response_deserializer=invoice_service_pb2.SubmitInvoicesResponse.FromString,
    )


def _with_invalid_utf8(message: invoice_service_pb2.SubmitInvoicesRequest) -> bytes:
    raw = message.SerializeToString()
    assert raw.count(MARK.encode()) == 1
    return raw.replace(MARK.encode(), BAD_UTF8)


async def test_invalid_utf8_refuses_only_its_invoice_at_its_field(
    channel: grpc.aio.Channel, tenant: object
) -> None:
    metadata = tenant.metadata  # type: ignore[attr-defined]
    bad = _invoice("UTF8-BAD", buyer_address=MARK)
    request = invoice_service_pb2.SubmitInvoicesRequest(invoices=[bad, proto_invoice("UTF8-OK")])
    call = _raw_stream(channel)(metadata=metadata)
    await call.write(_with_invalid_utf8(request))
    response = await call.read()
    await call.write(
        invoice_service_pb2.SubmitInvoicesRequest(
            invoices=[proto_invoice("UTF8-LATER")]
        ).SerializeToString()
    )
    later = await call.read()
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert [a.outcome for a in response.acks] == [
        invoice_service_pb2.ACK_OUTCOME_REJECTED,
        invoice_service_pb2.ACK_OUTCOME_ACCEPTED,
    ]
    assert "invoices[0].buyer_address" in {v.field for v in violations(response.acks[0].error)}
    assert later.acks[0].outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED


async def _unary_raw(
    channel: grpc.aio.Channel, method: str, raw: bytes, metadata: object
) -> status_pb2.Status:
    call = channel.unary_unary(method, request_serializer=lambda b: b)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(raw, metadata=metadata)
    status = rpc_status.from_call(caught.value)
    assert status is not None
    return status


async def test_invalid_utf8_and_garbage_are_invalid_argument_not_unknown(
    channel: grpc.aio.Channel, tenant: object
) -> None:
    metadata = tenant.metadata  # type: ignore[attr-defined]
    method = "/fbrhub.v1.InvoiceService/GetInvoice"
    raw = invoice_service_pb2.GetInvoiceRequest(erp_reference=MARK).SerializeToString()
    status = await _unary_raw(channel, method, raw.replace(MARK.encode(), BAD_UTF8), metadata)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert error_reason(status) == "TEXT_NOT_STORABLE"
    assert [v.field for v in violations(status)] == ["erp_reference"]
    garbage = await _unary_raw(channel, method, b"\x0a\xff\xff\xff\xff\x0f", metadata)
    assert garbage.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert error_reason(garbage) == "REQUEST_UNDECODABLE"


@pytest.fixture
async def stubs(gov_channel: grpc.aio.Channel) -> AsyncIterator[dict[str, object]]:
    yield {
        "invoices": invoice_service_pb2_grpc.InvoiceServiceStub(gov_channel),
        "admin": admin_service_pb2_grpc.AdminServiceStub(gov_channel),
        "audit": audit_service_pb2_grpc.AuditServiceStub(gov_channel),
        "privacy": privacy_service_pb2_grpc.PrivacyServiceStub(gov_channel),
    }


NUL_CALLS = [
    ("invoices", "GetInvoice", "erp", invoice_service_pb2.GetInvoiceRequest(erp_reference="a\x00"),
     "erp_reference"),
    ("invoices", "GetPrintData", "erp",
     invoice_service_pb2.GetPrintDataRequest(erp_reference="a\x00"), "erp_reference"),
    ("audit", "ListAuditEvents", "auditor",
     audit_service_pb2.ListAuditEventsRequest(actions=["a", "b\x00"]), "actions[1]"),
    ("admin", "CreateApiKey", "admin",
     admin_service_pb2.CreateApiKeyRequest(name="n\x00", role=admin_service_pb2.ROLE_ERP), "name"),
    ("admin", "CreateAccount", "admin",
     admin_service_pb2.CreateAccountRequest(username="u", full_name="F\x00", email="e@x.pk",
                                            password="p" * 16), "full_name"),
    ("privacy", "RecordConsent", "privacy_officer",
     privacy_service_pb2.RecordConsentRequest(account_id=str(uuid.uuid4()), source="s\x00"),
     "source"),
    ("privacy", "ExportPersonalData", "privacy_officer",
     privacy_service_pb2.ExportPersonalDataRequest(
         subject=privacy_service_pb2.DataSubject(buyer_ntn_cnic="37405\x00")),
     "subject.buyer_ntn_cnic"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("service", "method", "role", "request_", "path"), NUL_CALLS, ids=[c[1] for c in NUL_CALLS]
)
async def test_a_nul_in_any_field_is_invalid_argument_naming_the_field(
    stubs: dict[str, object],
    role_keys: RoleKeys,
    service: str,
    method: str,
    role: str,
    request_: object,
    path: str,
) -> None:
    rpc = getattr(stubs[service], method)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        answer = rpc(request_, metadata=role_keys.metadata(role))
        if hasattr(answer, "__aiter__"):
            [_ async for _ in answer]
        else:
            await answer
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None and error_reason(status) == "TEXT_NOT_STORABLE"
    assert path in {v.field for v in violations(status)}
