"""AdminService: API key lifecycle, accounts, and FBR tokens encrypted at rest."""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import sys
import uuid
from pathlib import Path

import bcrypt
import grpc
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from fbrhub.v1 import admin_service_pb2 as pb
from fbrhub.v1 import admin_service_pb2_grpc, audit_service_pb2, audit_service_pb2_grpc
from server.access.actor import Actor
from server.access.api_keys import create_api_key, revoke_api_key, rotate_api_key
from server.access.roles import Role
from server.api.admin import ROLE_FROM_PROTO, ROLE_TO_PROTO
from server.db import encryption as crypto
from server.db.engine import Database
from server.db.models import Account, ApiKey, AuditEvent, ConsentEvent, Tenant
from server.errors import ApiKeyRevoked, NotFound
from server.settings import DEVELOPMENT_FBR_TOKEN_KEY, Settings
from tests.conftest import RoleKeys, make_role_keys, make_tenant


def admin_stub(channel: grpc.aio.Channel) -> admin_service_pb2_grpc.AdminServiceStub:
    return admin_service_pb2_grpc.AdminServiceStub(channel)


async def test_api_key_lifecycle_create_list_rotate_revoke(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    admin = admin_stub(gov_channel)
    md = role_keys.metadata("admin")
    created = await admin.CreateApiKey(
        pb.CreateApiKeyRequest(role=pb.ROLE_AUDITOR, name="sox", request_id="r1"), metadata=md
    )
    secret = created.secret
    assert secret.startswith(f"fbrhub_{created.api_key.key_id}_")
    audit = audit_service_pb2_grpc.AuditServiceStub(gov_channel)
    as_new = (("authorization", f"Bearer {secret}"),)
    assert (
        await audit.VerifyAuditChain(audit_service_pb2.VerifyAuditChainRequest(), metadata=as_new)
    ).intact

    pages, token = [], ""
    while True:
        page = await admin.ListApiKeys(
            pb.ListApiKeysRequest(page_size=2, page_token=token), metadata=md
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    ids = [k.key_id for page in pages for k in page.api_keys]
    # The tenant fixture's key, one per role, and the new one; in pages of two.
    assert len(pages) == 3 and len(ids) == len(set(ids)) == 6
    assert ids[-1] == created.api_key.key_id
    assert secret not in str(pages)
    async with db.read() as session:
        row = await session.scalar(sa.select(ApiKey).where(ApiKey.key_id == created.api_key.key_id))
    secret_part = secret.removeprefix(f"fbrhub_{created.api_key.key_id}_")
    assert row is not None and secret_part not in row.secret_sha256 + row.name

    rotated = await admin.RotateApiKey(
        pb.RotateApiKeyRequest(key_id=created.api_key.key_id), metadata=md
    )
    assert rotated.api_key.role == pb.ROLE_AUDITOR and rotated.api_key.name == "sox"
    assert rotated.revoked_api_key.HasField("revoke_time")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await audit.VerifyAuditChain(audit_service_pb2.VerifyAuditChainRequest(), metadata=as_new)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    as_rotated = (("authorization", f"Bearer {rotated.secret}"),)
    await audit.VerifyAuditChain(audit_service_pb2.VerifyAuditChainRequest(), metadata=as_rotated)

    revoked = await admin.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=rotated.api_key.key_id), metadata=md
    )
    assert revoked.api_key.HasField("revoke_time")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await audit.VerifyAuditChain(
            audit_service_pb2.VerifyAuditChainRequest(), metadata=as_rotated
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    events = await audit.ListAuditEvents(
        audit_service_pb2.ListAuditEventsRequest(resource_prefix="apikeys/"), metadata=md
    )
    # First the fixtures' keys (the tenant's ERP key and one per role), then this test's acts.
    admin_actor = f"apikey:{role_keys.keys['admin'].split('_')[1]}"
    fixture_keys = [("apikey.create", "system:setup")] * (len(role_keys.keys) + 1)
    assert [(e.action, e.actor) for e in events.events] == [
        *fixture_keys,
        ("apikey.create", admin_actor),
        ("apikey.rotate", admin_actor),
        ("apikey.revoke", admin_actor),
    ]
    assert events.events[-3].request_id == "r1"


async def test_keys_of_another_tenant_look_missing(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    other = await make_tenant(db, "7000006", "sandbox-token-7000006")
    other_keys = await make_role_keys(db, other.id)
    other_key_id = other_keys.keys["erp"].split("_")[1]
    admin = admin_stub(gov_channel)
    errors = []
    for key_id in (other_key_id, "0123456789abcdef"):
        for call in (admin.RevokeApiKey, admin.RotateApiKey):
            request_type = (
                pb.RevokeApiKeyRequest if call is admin.RevokeApiKey else pb.RotateApiKeyRequest
            )
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call(request_type(key_id=key_id), metadata=role_keys.metadata("admin"))
            errors.append(
                (
                    call is admin.RevokeApiKey,
                    error.value.code(),
                    error.value.details(),
                    error.value.trailing_metadata(),
                )
            )
    assert {e[1] for e in errors} == {grpc.StatusCode.NOT_FOUND}
    assert errors[0][2] == errors[2][2] and errors[1][2] == errors[3][2]
    assert errors[0][3] == errors[2][3]
    async with db.read() as session:
        row = await session.scalar(sa.select(ApiKey).where(ApiKey.key_id == other_key_id))
    assert row is not None and row.revoked_at is None


async def test_accounts_store_only_a_bcrypt_hash_and_signup_consents(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    admin = admin_stub(gov_channel)
    request = pb.CreateAccountRequest(
        username="ayesha.k",
        full_name="Ayesha Khan",
        email="ayesha@example.pk",
        phone="+92 300 1234567",
        password="correct horse battery",
        role=pb.ROLE_ERP,
        consents=[pb.InitialConsent(purpose=pb.CONSENT_PURPOSE_MARKETING, granted=True)],
    )
    created = await admin.CreateAccount(request, metadata=role_keys.metadata("admin"))
    async with db.read() as session:
        account = await session.scalar(sa.select(Account))
        consents = list(await session.scalars(sa.select(ConsentEvent)))
    assert account is not None and str(account.id) == created.account_id
    assert account.password_bcrypt != request.password
    assert bcrypt.checkpw(request.password.encode(), account.password_bcrypt.encode())
    assert [(c.purpose, c.granted, c.source) for c in consents] == [("marketing", True, "signup")]
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await admin.CreateAccount(request, metadata=role_keys.metadata("admin"))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    too_long = pb.CreateAccountRequest()
    too_long.CopyFrom(request)
    too_long.full_name = "x" * 201
    with pytest.raises(grpc.aio.AioRpcError) as long_error:
        await admin.CreateAccount(too_long, metadata=role_keys.metadata("admin"))
    assert long_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x" * 20 not in long_error.value.details()


async def test_fbr_token_is_encrypted_at_rest_and_keys_rotate(
    gov_channel: grpc.aio.Channel, role_keys: RoleKeys, db: Database
) -> None:
    token = "pral-token-SECRET-4711"
    await admin_stub(gov_channel).SetFbrToken(
        pb.SetFbrTokenRequest(fbr_token=token), metadata=role_keys.metadata("admin")
    )
    raw_query = sa.text("select fbr_token from tenants where id = :id")
    tenant_id = role_keys.tenant_id
    bind = tenant_id if db.is_postgres else tenant_id.hex
    async with db.read() as session:
        stored = await session.scalar(raw_query, {"id": bind})
        tenant = await session.get(Tenant, tenant_id)
    assert stored is not None and stored.startswith("fernet:") and token not in stored
    assert tenant is not None and tenant.fbr_token == token
    # Rotation: a new key first, the old one still decrypts; rotate re-encrypts with the new.
    new_key = Fernet.generate_key().decode()
    try:
        crypto.configure_token_keys([new_key, DEVELOPMENT_FBR_TOKEN_KEY])
        rotated = crypto.rotate_secret(stored)
        crypto.configure_token_keys([new_key])
        assert crypto.decrypt_secret(rotated) == token
        with pytest.raises(crypto.SecretDecryptionError):
            crypto.decrypt_secret(stored)
    finally:
        crypto.configure_token_keys([DEVELOPMENT_FBR_TOKEN_KEY])


def test_placeholder_and_weak_secrets_are_refused_in_production() -> None:
    real = Fernet.generate_key().decode()
    strong = secrets.token_urlsafe(32)
    with pytest.raises(ValueError, match="FBR_TOKEN_KEYS"):
        Settings(environment="production", cursor_secret=strong)  # type: ignore[arg-type]
    Settings(environment="production", cursor_secret=strong, fbr_token_keys=real)  # type: ignore[arg-type]
    for weak in ("x", "real-cursor-secret", "a" * 64, "ab" * 40):
        with pytest.raises(ValueError, match="CURSOR_SECRET"):
            Settings(environment="production", cursor_secret=weak, fbr_token_keys=real)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retention_years"):
        Settings(retention_years=4)
    with pytest.raises(ValueError):
        Settings(account_anonymise_days=91)


async def test_cli_manages_keys_accounts_retention_and_secrets(tmp_path: Path) -> None:
    env = {**os.environ, "FBRHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    env["FBRHUB_PASSWORD_BCRYPT_ROUNDS"] = "4"

    async def run(*args: str, stdin: bytes = b"") -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.commands",
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(stdin)
        assert process.returncode == 0, err.decode()
        return out.decode().strip()

    await run("migrate")
    tenant = await run(
        "tenant",
        "create",
        "--ntn",
        "8885801",
        "--name",
        "Demo",
        "--province",
        "PUNJAB",
        "--address",
        "1 Mall Road",
        "--fbr-token",
        "cli-token",
    )
    key = await run("apikey", "create", "--tenant", tenant, "--role", "auditor")
    key_id = key.split("_")[1]
    assert key_id in await run("apikey", "list", "--tenant", tenant)
    rotated = await run("apikey", "rotate", "--tenant", tenant, "--key-id", key_id)
    listing = await run("apikey", "list", "--tenant", tenant)
    assert f"{key_id}\tauditor\trevoked" in listing and rotated.split("_")[1] in listing
    assert key not in listing and rotated not in listing
    account = await run(
        "account",
        "create",
        "--tenant",
        tenant,
        "--username",
        "cli.user",
        "--full-name",
        "Cli User",
        "--email",
        "cli@example.pk",
        stdin=b"a long cli password\n",
    )
    assert uuid.UUID(account)
    assert "anonymised 0 accounts" in await run("retention", "run")
    assert "re-encrypted 1 FBR tokens" in await run("secrets", "rotate")

    db = Database(env["FBRHUB_DATABASE_URL"])
    try:
        async with db.read() as session:
            trail = list(await session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))
    finally:
        await db.dispose()
    user = f"cli:{getpass.getuser()}"
    assert [(e.action, e.actor, e.resource) for e in trail] == [
        ("tenant.create", "cli:tenant-create", f"tenants/{tenant}"),
        ("apikey.create", "cli:apikey-create", f"apikeys/{key_id}"),
        ("apikey.rotate", user, f"apikeys/{key_id}"),
        ("account.create", user, f"accounts/{account}"),
        ("secrets.rotate", "cli:secrets-rotate", f"tenants/{tenant}"),
    ]
    assert trail[1].details == {"role": "auditor"}
    assert trail[2].details == {"replaced_by": rotated.split("_")[1]}
    assert trail[2].request_id.startswith("cli-") and trail[3].request_id.startswith("cli-")


async def test_every_key_act_is_audited_with_the_change_or_not_at_all(db: Database) -> None:
    tenant = await make_tenant(db, "8885801", "sandbox-token-8885801")
    actor = Actor("cli:test", "req-1")
    row, _ = await create_api_key(db, tenant.id, role=Role.AUDITOR, name="a", actor=actor)
    with pytest.raises(NotFound):
        await create_api_key(db, uuid.uuid4(), actor=actor)
    await revoke_api_key(db, tenant.id, row.key_id, actor=actor)
    with pytest.raises(ApiKeyRevoked):
        await rotate_api_key(db, tenant.id, row.key_id, actor=actor)
    with pytest.raises(NotFound):
        await revoke_api_key(db, tenant.id, "0123456789abcdef", actor=actor)
    async with db.read() as session:
        trail = list(await session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))
    assert [(e.action, e.actor, e.request_id) for e in trail] == [
        ("tenant.create", "system:setup", ""),
        ("apikey.create", "system:setup", ""),
        ("apikey.create", "cli:test", "req-1"),
        ("apikey.revoke", "cli:test", "req-1"),
    ]
    assert {e.tenant_id for e in trail} == {tenant.id}


def test_every_role_maps_to_a_protobuf_role_and_back() -> None:
    assert set(ROLE_FROM_PROTO) == set(pb.Role.values()) - {pb.ROLE_UNSPECIFIED}
    for role in Role:
        assert ROLE_FROM_PROTO[ROLE_TO_PROTO[role]] is role
