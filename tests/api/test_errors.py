"""The one table from domain errors to gRPC statuses, and strict cursors and page tokens."""

from __future__ import annotations

import inspect
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2

from fbrhub.v1 import invoice_service_pb2
from server import errors
from server.api.errors import STATUS_CODES, error_status, status_code
from server.api.tokens import Cursors, PageTokens, TokenCodec, aware_time, uuid_value

DOMAIN_ERRORS = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.HubError) and cls is not errors.HubError
]


@pytest.mark.parametrize("error_class", DOMAIN_ERRORS, ids=lambda cls: cls.__name__)
def test_every_domain_error_has_a_status_code_and_its_own_reason(error_class: type) -> None:
    codes = {status_code(instance) for instance in [_instance(error_class)]}
    assert grpc.StatusCode.INTERNAL not in codes
    assert error_class.reason.isupper() and error_class.reason != "INTERNAL"


def test_reasons_are_unique_so_clients_can_branch_on_them() -> None:
    reasons = [cls.reason for cls in DOMAIN_ERRORS]
    assert len(reasons) == len(set(reasons))


def test_the_table_lists_only_domain_errors() -> None:
    assert all(issubclass(cls, errors.HubError) for cls in STATUS_CODES)


def test_a_field_error_names_the_field_in_error_info_and_bad_request() -> None:
    status = error_status(errors.FieldTooLong("name", "name must be at most 100 characters"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    status.details[0].Unpack(info)
    status.details[1].Unpack(bad)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "FIELD_TOO_LONG",
        "fbrhub",
        {"field": "name"},
    )
    assert [(v.field, v.reason) for v in bad.field_violations] == [("name", "INVALID_VALUE")]


def test_an_unexpected_error_is_a_bare_internal() -> None:
    status = error_status(None)
    assert (status.code, status.message) == (grpc.StatusCode.INTERNAL.value[0], "internal error")


TENANT = uuid.UUID(int=7)
CODEC = TokenCodec(b"test-secret")


@pytest.mark.parametrize(
    "payload",
    [{"s": "1"}, {"s": -1}, {"s": 2**63}, {"s": True}, {"s": 1.5}, {}, {"s": None}],
    ids=["text", "negative", "2**63", "bool", "float", "missing", "null"],
)
def test_a_signed_cursor_with_odd_contents_is_cursor_invalid(payload: dict[str, object]) -> None:
    cursor = CODEC.encode("results", TENANT, payload)
    with pytest.raises(errors.CursorInvalid):
        Cursors(CODEC, "results").decode(TENANT, cursor)


@pytest.mark.parametrize(
    "payload",
    [
        {"t": "2025-01-01T00:00:00", "i": str(uuid.UUID(int=1))},
        {"t": 5, "i": str(uuid.UUID(int=1))},
        {"t": "2025-01-01T00:00:00+00:00", "i": 12},
        {"t": "2025-01-01T00:00:00+00:00", "i": "not-a-uuid"},
        {"t": "9999-99-99T00:00:00+00:00", "i": str(uuid.UUID(int=1))},
    ],
    ids=["no-timezone", "number-time", "number-id", "bad-id", "bad-date"],
)
def test_a_signed_page_token_with_odd_contents_is_page_token_invalid(
    payload: dict[str, object],
) -> None:
    pages = PageTokens(
        CODEC,
        "page",
        lambda p: {"t": p[0].isoformat(), "i": str(p[1])},
        lambda d: (aware_time(d["t"]), uuid_value(d["i"])),
    )
    request = invoice_service_pb2.ListInvoicesRequest(page_size=5)
    fingerprint = pages.next_token(TENANT, request, (aware_time("2025-01-01T00:00:00+00:00"), 1))
    signed = CODEC.decode("page", TENANT, fingerprint)["f"]
    request.page_token = CODEC.encode("page", TENANT, {"f": signed, **payload})
    with pytest.raises(errors.PageTokenInvalid):
        pages.position(TENANT, request)


def _instance(error_class: type) -> errors.HubError:
    parameters = inspect.signature(error_class).parameters
    arguments = {
        "path": "field",
        "message": "message",
        "resource": "invoice",
        "expected": "IN_DOUBT",
        "actual": "QUEUED",
        "violations": (),
    }
    instance: errors.HubError = error_class(**{name: arguments[name] for name in parameters})
    return instance
