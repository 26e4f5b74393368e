"""Named hostile requests that once reached INTERNAL: each now gets a field error."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
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
from server.api.tokens import TokenCodec, filters_fingerprint
from server.settings import DEVELOPMENT_CURSOR_SECRET
from tests.conftest import RoleKeys
from tests.helpers import error_reason, violations

CODEC = TokenCodec(DEVELOPMENT_CURSOR_SECRET.encode())
ODD_TIMES = [
    "2025-01-01T00:00:00",  # no timezone
    "0001-01-01T00:00:00+05:00",  # no UTC form
    "9999-12-31T23:59:59-05:00",  # no UTC form
    5,
]


async def _refused(call: Awaitable[object]) -> tuple[grpc.StatusCode, str, set[str]]:
    try:
        answer = await call
        if hasattr(answer, "__aiter__"):
            [_ async for _ in answer]  # type: ignore[attr-defined]
    except grpc.aio.AioRpcError as error:
        status = rpc_status.from_call(error)
        assert status is not None
        return error.code(), error_reason(status), {v.field for v in violations(status)}
    raise AssertionError("the request was accepted")


def _stamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


async def test_odd_filters_are_invalid_argument(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys
) -> None:
    invoices = invoice_service_pb2_grpc.InvoiceServiceStub(gov_channel)
    audit = audit_service_pb2_grpc.AuditServiceStub(gov_channel)
    erp, auditor = role_keys.metadata("erp"), role_keys.metadata("auditor")
    cases = [
        (invoices.ListInvoices(invoice_service_pb2.ListInvoicesRequest(
            received_after=_stamp(10**12)), metadata=erp), "received_after"),
        (invoices.ListInvoices(invoice_service_pb2.ListInvoicesRequest(
            received_before=_stamp(0, -1)), metadata=erp), "received_before"),
        (invoices.ListInvoices(invoice_service_pb2.ListInvoicesRequest(
            states=[99]), metadata=erp), "states[0]"),
        (invoices.ListInvoices(invoice_service_pb2.ListInvoicesRequest(
            states=[invoice_pb2.INVOICE_STATE_QUEUED] * 70_000), metadata=erp), "states"),
        (invoices.ListInvoices(invoice_service_pb2.ListInvoicesRequest(
            invoice_date_from="2024-02-30"), metadata=erp), "invoice_date_from"),
        (invoices.ListInvoices(invoice_service_pb2.ListInvoicesRequest(
            page_size=-1), metadata=erp), "page_size"),
        (audit.ListAuditEvents(audit_service_pb2.ListAuditEventsRequest(
            start_time=_stamp(-(10**12))), metadata=auditor), "start_time"),
        (audit.ListAuditEvents(audit_service_pb2.ListAuditEventsRequest(
            actions=["invoice.queued"] * 70_000), metadata=auditor), "actions"),
    ]  # fmt: skip
    for call, field in cases:
        code, _, fields = await _refused(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in fields


@pytest.mark.parametrize("moment", ODD_TIMES, ids=["naive", "year-0", "year-10000", "number"])
async def test_signed_page_tokens_with_odd_contents_are_refused_by_every_list(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, moment: object
) -> None:
    tenant = role_keys.tenant_id
    invoices = invoice_service_pb2_grpc.InvoiceServiceStub(gov_channel)
    admin = admin_service_pb2_grpc.AdminServiceStub(gov_channel)
    privacy = privacy_service_pb2_grpc.PrivacyServiceStub(gov_channel)
    lists = [
        (invoices.ListInvoices, invoice_service_pb2.ListInvoicesRequest, "page",
         {"i": str(uuid.uuid4())}, "erp"),
        (admin.ListApiKeys, admin_service_pb2.ListApiKeysRequest, "apikeys", {"k": "ab"},
         "admin"),
        (privacy.ListPrivacyRequests, privacy_service_pb2.ListPrivacyRequestsRequest,
         "privacy-requests", {"r": "x"}, "privacy_officer"),
    ]  # fmt: skip
    for rpc, request_type, kind, rest, role in lists:
        request = request_type()
        token = CODEC.encode(kind, tenant, {"f": filters_fingerprint(request), "t": moment, **rest})
        request.page_token = token
        code, reason, _ = await _refused(rpc(request, metadata=role_keys.metadata(role)))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID"), kind


@pytest.mark.parametrize("position", [2**63, -1, "1", 1.5, True], ids=str)
async def test_signed_cursors_with_odd_contents_are_refused(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, position: object
) -> None:
    tenant = role_keys.tenant_id
    invoices = invoice_service_pb2_grpc.InvoiceServiceStub(gov_channel)
    audit = audit_service_pb2_grpc.AuditServiceStub(gov_channel)
    results = invoices.StreamResults(
        invoice_service_pb2.StreamResultsRequest(
            cursor=CODEC.encode("results", tenant, {"s": position})
        ),
        metadata=role_keys.metadata("erp"),
    )
    events = audit.StreamAuditEvents(
        audit_service_pb2.StreamAuditEventsRequest(
            cursor=CODEC.encode("audit", tenant, {"s": position})
        ),
        metadata=role_keys.metadata("auditor"),
    )
    for call in (results, events):
        code, reason, _ = await _refused(_first(call))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CURSOR_INVALID")


async def _first(call: object) -> None:
    async for _ in call:  # type: ignore[attr-defined]
        return


async def test_an_fbr_token_and_a_password_longer_than_their_columns_take(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys
) -> None:
    admin = admin_service_pb2_grpc.AdminServiceStub(gov_channel)
    metadata = role_keys.metadata("admin")
    code, _, fields = await _refused(
        admin.SetFbrToken(
            admin_service_pb2.SetFbrTokenRequest(fbr_token="\U0001f600" * 500), metadata=metadata
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"fbr_token"})
    created = await admin.CreateAccount(
        admin_service_pb2.CreateAccountRequest(
            username="long.password",
            full_name="Long Password",
            email="long@example.pk",
            password="p4ss-" * 20,  # 100 characters: README allows 12-128
            role=admin_service_pb2.ROLE_ERP,
        ),
        metadata=metadata,
    )
    assert created.account_id


async def test_a_correction_longer_than_its_column_is_a_field_error(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys
) -> None:
    admin = admin_service_pb2_grpc.AdminServiceStub(gov_channel)
    privacy = privacy_service_pb2_grpc.PrivacyServiceStub(gov_channel)
    created = await admin.CreateAccount(
        admin_service_pb2.CreateAccountRequest(
            username="to.correct",
            full_name="To Correct",
            email="c@example.pk",
            password="correct me please",
            role=admin_service_pb2.ROLE_ERP,
        ),
        metadata=role_keys.metadata("admin"),
    )
    subject = privacy_service_pb2.DataSubject(account_id=created.account_id)
    for field, value in (("phone", "1" * 100), ("full_name", "n" * 250), ("email", "not-mail")):
        code, _, fields = await _refused(
            privacy.CorrectPersonalData(
                privacy_service_pb2.CorrectPersonalDataRequest(
                    subject=subject,
                    corrections=[privacy_service_pb2.FieldCorrection(field=field, value=value)],
                    request_id=str(uuid.uuid4()),
                ),
                metadata=role_keys.metadata("privacy_officer"),
            )
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"corrections[0].value"})
