"""The published contract: every reason the hub can send is in ErrorReason; reflection v1.

A reason the hub sends but the enum lacks would reach clients in other languages as an
unknown value, so the hub's reasons are collected from their sources: the domain error
classes, the per-invoice rejections and stored errors (every UPPER_SNAKE string the hub's
code passes as a ``reason``), and the FBR codes of the rule tables.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2

from clients.fbr import payload
from clients.fbr.codes import FIELD_BY_FBR_CODE
from clients.fbr.pos.rules import POS_REJECTED
from clients.fbr.rules import Violation
from clients.fbr.rules.table import RULES
from fbrhub.v1 import error_reason_pb2
from fbrhub_sdk import convert as sdk_convert
from fbrhub_sdk import errors as sdk_errors
from server import errors
from server.api.errors import STATUS_CODES, violation_reason
from server.app import Hub

SERVER = Path(__file__).resolve().parents[2] / "server"
REASON = re.compile(r"^[A-Z][A-Z0-9_]+$")
PUBLISHED = set(error_reason_pb2.ErrorReason.keys())


def _domain_classes(cls: type[errors.HubError]) -> Iterator[type[errors.HubError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _domain_classes(sub)


def _reason_literals(tree: ast.AST) -> Iterator[str]:
    """Strings passed as a reason: ``reason=``, ``{"reason": ...}``, ``InvoiceError(...)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "reason":
            yield from _strings(node.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "reason":
                    yield from _strings(value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "InvoiceError":
            if node.args:
                yield from _strings(node.args[0])
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign) and any(
                    getattr(t, "id", "") == "reason" for t in statement.targets
                ):
                    yield from _strings(statement.value)


def _strings(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        is_text = isinstance(child, ast.Constant) and isinstance(child.value, str)
        if is_text and REASON.match(child.value):
            yield child.value


def test_every_reason_the_hub_can_send_is_published() -> None:
    sent = {cls.reason for cls in _domain_classes(errors.HubError)}
    sent.add(violation_reason(Violation("x", "", "y")))  # INVALID_VALUE
    for path in SERVER.rglob("*.py"):
        sent.update(_reason_literals(ast.parse(path.read_text(), str(path))))
    codes = {rule.fbr_error_code for rule in RULES} | set(FIELD_BY_FBR_CODE) | {POS_REJECTED}
    sent.update(violation_reason(Violation("x", code, "y")) for code in codes)
    # The scan must see the per-invoice reasons, or it proves nothing.
    assert {
        "ERP_REFERENCE_REUSED",
        "FBR_REJECTED",
        "FBR_OUTCOME_UNKNOWN",
        "FBR_UNAVAILABLE",
    } <= sent
    assert sent - PUBLISHED == set()


def test_reason_numbers_follow_the_published_families() -> None:
    for name, number in error_reason_pb2.ErrorReason.items():
        if name.startswith("FBR_") and name[4:].isdigit():
            base = 10000 if len(name[4:]) == 4 else 20000
            assert number == base + int(name[4:]), name


def test_the_sdk_raises_the_family_the_hub_means() -> None:
    families = {
        grpc.StatusCode.INVALID_ARGUMENT: sdk_errors.InvalidArgumentError,
        grpc.StatusCode.UNAUTHENTICATED: sdk_errors.AuthenticationError,
        grpc.StatusCode.PERMISSION_DENIED: sdk_errors.PermissionDeniedError,
        grpc.StatusCode.NOT_FOUND: sdk_errors.NotFoundError,
        grpc.StatusCode.ALREADY_EXISTS: sdk_errors.ConflictError,
        grpc.StatusCode.FAILED_PRECONDITION: sdk_errors.ConflictError,
        grpc.StatusCode.RESOURCE_EXHAUSTED: sdk_errors.ResourceExhaustedError,
    }
    for cls in _domain_classes(errors.HubError):
        code = next((STATUS_CODES[c] for c in cls.__mro__ if c in STATUS_CODES), None)
        if code is None:  # HubError itself: INTERNAL
            continue
        raised = sdk_errors.error_class(code, cls.reason)
        assert issubclass(raised, families[code]), (cls.__name__, raised.__name__)


async def test_reflection_v1_and_v1alpha_both_answer(hub: Hub) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="fbrhub.v1.ErrorReason")
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    async with grpc.aio.insecure_channel(hub.address) as channel:
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )(iter([listing, request]))
            services, found = [m async for m in call]
            names = {s.name for s in services.list_services_response.service}
            assert {"fbrhub.v1.InvoiceService", "grpc.reflection.v1.ServerReflection"} <= names
            (file,) = found.file_descriptor_response.file_descriptor_proto
            assert b"fbrhub/v1/error_reason.proto" in file


def test_the_sdk_maps_fbr_json_as_the_hub_reads_it() -> None:
    """The SDK's FBR key tables are the hub's own (clients/fbr/payload.py), seller apart."""
    items = {theirs: ours for ours, theirs in payload.ITEM_FIELDS}
    header = {theirs: ours for ours, theirs in payload.HEADER_FIELDS}
    sellers = {k for k, v in header.items() if v.startswith("seller_")}
    assert dict(sdk_convert.FBR_ITEM_KEYS) == items
    assert dict(sdk_convert.FBR_HEADER_KEYS) == {
        k: v for k, v in header.items() if k not in sellers
    }
    assert sellers == sdk_convert.FBR_SELLER_KEYS
    assert set(sdk_convert.INVOICE_TYPES) == {
        payload.INVOICE_TYPE_SALE,
        payload.INVOICE_TYPE_DEBIT_NOTE,
    }
    assert set(sdk_convert.REGISTRATION_TYPES) == {payload.REGISTERED, payload.UNREGISTERED}
