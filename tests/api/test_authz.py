"""Access control: one role table, enforced in the interceptor, for every RPC.

Every RPC is called with every role and with no key against a real hub; only the
combinations in ``server.api.authz.RPC_ROLES`` get past the interceptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from sqlalchemy import select

from server.access.roles import Role
from server.api.authz import HUB_SERVICES, RPC_ROLES, hub_methods
from server.app import Hub
from server.audit.trail import SYSTEM_TENANT
from server.db.engine import Database
from server.db.models import AuditEvent
from tests.conftest import RoleKeys

EXPECTED = {
    "fbrhub.v1.InvoiceService": {"erp", "admin"},
    "fbrhub.v1.PrivacyService": {"privacy_officer"},
    "fbrhub.v1.AuditService": {"auditor", "admin"},
    "fbrhub.v1.AdminService": {"admin"},
}
REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def _methods() -> list[MethodDescriptor]:
    return [m for service in HUB_SERVICES for m in service.methods]


async def call_rpc(
    channel: grpc.aio.Channel, method: MethodDescriptor, metadata: Any
) -> grpc.StatusCode:
    """Call any RPC with an empty request; returns the final status code."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": response_class.FromString,
    }
    try:
        if method.client_streaming:

            async def nothing() -> AsyncIterator[Any]:
                return
                yield

            stream = channel.stream_stream(path, **kwargs)(nothing(), metadata=metadata, timeout=10)
            async for _ in stream:
                pass
        elif method.server_streaming:
            stream = channel.unary_stream(path, **kwargs)(
                request_class(), metadata=metadata, timeout=10
            )
            async for _ in stream:
                pass
        else:
            await channel.unary_unary(path, **kwargs)(
                request_class(), metadata=metadata, timeout=10
            )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_role_table_covers_every_method_of_every_service() -> None:
    assert set(RPC_ROLES) == set(hub_methods())
    for method, roles in RPC_ROLES.items():
        assert roles == EXPECTED[method.split("/")[1]], method


async def test_every_rpc_with_every_role_and_without_a_key(
    gov_hub: Hub, gov_channel: grpc.aio.Channel, role_keys: RoleKeys
) -> None:
    outcomes: dict[tuple[str, str], grpc.StatusCode] = {}
    for method in _methods():
        service = method.containing_service.full_name
        code = await call_rpc(gov_channel, method, None)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method.name, "no key", code)
        bad = (("authorization", "Bearer fbrhub_0000_not-a-key"),)
        assert await call_rpc(gov_channel, method, bad) == grpc.StatusCode.UNAUTHENTICATED
        for role in Role:
            code = await call_rpc(gov_channel, method, role_keys.metadata(role))
            outcomes[(method.name, role)] = code
            if role in EXPECTED[service]:
                assert code not in REFUSED, (method.name, role, code)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (method.name, role, code)
    allowed = sum(code not in REFUSED for code in outcomes.values())
    assert allowed == sum(len(EXPECTED[m.containing_service.full_name]) for m in _methods())


async def test_refused_calls_are_audited_without_the_secret(
    gov_hub: Hub, gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    privacy_method = next(m for m in _methods() if m.name == "ListPrivacyRequests")
    assert await call_rpc(gov_channel, privacy_method, role_keys.metadata("erp")) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    key_id = role_keys.keys["erp"].split("_")[1]
    wrong = f"fbrhub_{key_id}_wrong-secret-value"
    assert await call_rpc(gov_channel, privacy_method, (("authorization", f"Bearer {wrong}"),)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert await call_rpc(gov_channel, privacy_method, None) == grpc.StatusCode.UNAUTHENTICATED
    # Failed authentications are counted in memory and written once per window.
    assert gov_hub.auditor is not None
    await gov_hub.auditor.flush()
    async with db.read() as session:
        tenant_events = list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.tenant_id == role_keys.tenant_id)
            )
        )
        system_events = list(
            await session.scalars(select(AuditEvent).where(AuditEvent.tenant_id == SYSTEM_TENANT))
        )
    denied = [e for e in tenant_events if e.action == "auth.denied"]
    failed = [e for e in tenant_events if e.action == "auth.failed"]
    assert [(e.outcome, e.actor, e.details) for e in denied] == [
        ("PERMISSION_DENIED", f"apikey:{key_id}", {"role": "erp"})
    ]
    assert [(e.outcome, e.details["reason"], e.details["count"]) for e in failed] == [
        ("UNAUTHENTICATED", "WRONG_SECRET", "1")
    ]
    assert any(e.actor == "anonymous" and e.details["reason"] == "NO_KEY" for e in system_events)
    for event in tenant_events + system_events:
        assert "wrong-secret-value" not in repr(
            (event.actor, event.resource, event.details, event.request_id)
        )


@pytest.mark.parametrize("role", ["auditor", "erp"])
async def test_permission_denied_comes_before_not_found(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, role: str
) -> None:
    # A missing account with a role that may not ask: PERMISSION_DENIED, never NOT_FOUND.
    method = next(m for m in _methods() if m.name == "CloseAccount")
    assert await call_rpc(gov_channel, method, role_keys.metadata(role)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await call_rpc(gov_channel, method, role_keys.metadata("privacy_officer")) in {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
    }
