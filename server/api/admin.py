"""AdminService: API keys, accounts and the FBR credential of the caller's tenant."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import grpc

from fbrhub.v1 import admin_service_pb2, admin_service_pb2_grpc
from server.access import api_keys
from server.access.accounts import create_account
from server.access.actor import Actor
from server.access.api_keys import ApiKeyVerifier
from server.access.roles import Role
from server.access.tenants import set_fbr_token
from server.api.convert.common import timestamp
from server.api.interceptor import current_caller
from server.api.limits import check_lengths, page_size
from server.api.tokens import PageTokens, TokenCodec, aware_time, short_text
from server.db.engine import Database
from server.db.models import ApiKey
from server.errors import InvalidField
from server.settings import Settings

# Role <-> protobuf Role by name (Role.AUDITOR is ROLE_AUDITOR), so that a role missing
# from the proto fails at import rather than on the first call that uses it.
ROLE_FROM_PROTO: Mapping[admin_service_pb2.Role.ValueType, Role] = {
    admin_service_pb2.Role.Value(f"ROLE_{role.name}"): role for role in Role
}
# Keyed by the stored role name, which is what a row's ``role`` holds.
ROLE_TO_PROTO: Mapping[str, admin_service_pb2.Role.ValueType] = {
    role.value: value for value, role in ROLE_FROM_PROTO.items()
}
PURPOSE_NAMES = {
    admin_service_pb2.CONSENT_PURPOSE_MARKETING: "marketing",
    admin_service_pb2.CONSENT_PURPOSE_ANALYTICS: "analytics",
    admin_service_pb2.CONSENT_PURPOSE_PRODUCT_UPDATES: "product_updates",
    admin_service_pb2.CONSENT_PURPOSE_SUPPORT_CONTACT: "support_contact",
}
PURPOSE_VALUES = {name: value for value, name in PURPOSE_NAMES.items()}


def role_of(value: admin_service_pb2.Role.ValueType, path: str = "role") -> Role:
    """The role of a protobuf Role value; INVALID_ARGUMENT when unset or unknown."""
    role = ROLE_FROM_PROTO.get(value)
    if role is None:
        raise InvalidField(path, "role is required")
    return role


def key_to_proto(row: ApiKey) -> admin_service_pb2.ApiKey:
    """An API key row as protobuf (never the hash)."""
    return admin_service_pb2.ApiKey(
        key_id=row.key_id,
        role=ROLE_TO_PROTO.get(row.role, admin_service_pb2.ROLE_UNSPECIFIED),
        name=row.name,
        create_time=timestamp(row.created_at),
        revoke_time=timestamp(row.revoked_at),
    )


def acting(request_id: str = "") -> tuple[uuid.UUID, Actor]:
    """The caller's tenant, and the calling key as the actor of an administrative act."""
    caller = current_caller()
    return caller.tenant_id, Actor(f"apikey:{caller.key_id}", request_id)


class AdminService(admin_service_pb2_grpc.AdminServiceServicer):
    """The admin API of a tenant."""

    def __init__(
        self, db: Database, verifier: ApiKeyVerifier, tokens: TokenCodec, settings: Settings
    ) -> None:
        self._db = db
        self._verifier = verifier
        self._pages: PageTokens[tuple[dt.datetime, str]] = PageTokens(
            tokens,
            "apikeys",
            lambda p: {"t": p[0].isoformat(), "k": p[1]},
            lambda d: (aware_time(d["t"]), short_text(d["k"], 32)),
        )
        self._settings = settings

    async def CreateApiKey(
        self,
        request: admin_service_pb2.CreateApiKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_service_pb2.CreateApiKeyResponse:
        check_lengths(request, name=100, request_id=64)
        tenant_id, actor = acting(request.request_id)
        row, token = await api_keys.create_api_key(
            self._db, tenant_id, role=role_of(request.role), name=request.name, actor=actor
        )
        return admin_service_pb2.CreateApiKeyResponse(api_key=key_to_proto(row), secret=token)

    async def ListApiKeys(
        self,
        request: admin_service_pb2.ListApiKeysRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_service_pb2.ListApiKeysResponse:
        tenant_id = current_caller().tenant_id
        size = page_size(request.page_size, default=50, maximum=500)
        after = self._pages.position(tenant_id, request)
        rows = await api_keys.list_api_keys(self._db, tenant_id, after=after, limit=size + 1)
        rows, next_token = self._pages.page(
            tenant_id, request, rows, size, lambda row: (row.created_at, row.key_id)
        )
        return admin_service_pb2.ListApiKeysResponse(
            api_keys=[key_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def RotateApiKey(
        self,
        request: admin_service_pb2.RotateApiKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_service_pb2.RotateApiKeyResponse:
        check_lengths(request, key_id=32, request_id=64)
        tenant_id, actor = acting(request.request_id)
        new, token, old = await api_keys.rotate_api_key(
            self._db, tenant_id, request.key_id, actor=actor
        )
        self._verifier.forget(old.key_id)
        return admin_service_pb2.RotateApiKeyResponse(
            api_key=key_to_proto(new), secret=token, revoked_api_key=key_to_proto(old)
        )

    async def RevokeApiKey(
        self,
        request: admin_service_pb2.RevokeApiKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_service_pb2.RevokeApiKeyResponse:
        check_lengths(request, key_id=32, request_id=64)
        tenant_id, actor = acting(request.request_id)
        row = await api_keys.revoke_api_key(self._db, tenant_id, request.key_id, actor=actor)
        self._verifier.forget(row.key_id)
        return admin_service_pb2.RevokeApiKeyResponse(api_key=key_to_proto(row))

    async def CreateAccount(
        self,
        request: admin_service_pb2.CreateAccountRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_service_pb2.CreateAccountResponse:
        check_lengths(
            request, username=64, full_name=200, email=254, phone=32, password=128, request_id=64
        )
        consents = []
        for index, consent in enumerate(request.consents):
            if consent.purpose not in PURPOSE_NAMES:
                raise InvalidField(f"consents[{index}].purpose", "purpose is required")
            consents.append((PURPOSE_NAMES[consent.purpose], consent.granted))
        tenant_id, actor = acting(request.request_id)
        account_id = await create_account(
            self._db,
            tenant_id,
            username=request.username,
            full_name=request.full_name,
            email=request.email,
            phone=request.phone,
            password=request.password,
            role=role_of(request.role),
            consents=consents,
            bcrypt_rounds=self._settings.password_bcrypt_rounds,
            actor=actor,
        )
        return admin_service_pb2.CreateAccountResponse(account_id=str(account_id))

    async def SetFbrToken(
        self,
        request: admin_service_pb2.SetFbrTokenRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_service_pb2.SetFbrTokenResponse:
        check_lengths(request, fbr_token=512, request_id=64)
        tenant_id, actor = acting(request.request_id)
        when = await set_fbr_token(self._db, tenant_id, request.fbr_token, actor=actor)
        return admin_service_pb2.SetFbrTokenResponse(update_time=timestamp(when))
