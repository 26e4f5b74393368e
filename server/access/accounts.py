"""Tenant administration: API key lifecycle, platform accounts, the FBR credential.

Every act is audited in the same transaction as the change itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import bcrypt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.access.api_keys import new_api_key_row
from server.access.roles import Role
from server.audit.trail import NewAuditEvent, append_audit_events
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import Account, AccountStatus, ApiKey, ConsentEvent, Tenant
from server.errors import ApiKeyRevoked, InvalidField, NotFound, UsernameTaken

USERNAME = re.compile(r"^[A-Za-z0-9._-]{3,64}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")


@dataclass(frozen=True)
class Actor:
    """Who performs an administrative act, and under which request id."""

    tenant_id: uuid.UUID
    name: str
    request_id: str = ""

    def event(self, action: str, resource: str, **details: str) -> NewAuditEvent:
        """An audit event of this actor."""
        return NewAuditEvent(
            tenant_id=self.tenant_id,
            actor=self.name,
            action=action,
            resource=resource,
            request_id=self.request_id,
            details=details,
        )


async def create_key(db: Database, actor: Actor, *, role: Role, name: str) -> tuple[ApiKey, str]:
    """Create an API key; returns its row and the full key (shown once)."""
    row, token = new_api_key_row(actor.tenant_id, role=role, name=name)
    async with db.write("apikey.create") as session:
        session.add(row)
        await append_audit_events(
            session, [actor.event("apikey.create", f"apikeys/{row.key_id}", role=role)]
        )
    return row, token


async def list_keys(
    db: Database, tenant_id: uuid.UUID, *, after: dt.datetime | None, after_id: str, limit: int
) -> list[ApiKey]:
    """The tenant's keys, oldest first, after a (created_at, key_id) position."""
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
    if after is not None:
        query = query.where(
            (ApiKey.created_at > after)
            | ((ApiKey.created_at == after) & (ApiKey.key_id > after_id))
        )
    async with db.read("apikey.list") as session:
        rows = await session.scalars(query.order_by(ApiKey.created_at, ApiKey.key_id).limit(limit))
        return list(rows)


async def _key(session: AsyncSession, tenant_id: uuid.UUID, key_id: str) -> ApiKey:
    row = await session.scalar(
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id, ApiKey.key_id == key_id)
        .with_for_update()
    )
    if row is None:
        raise NotFound("api key")
    return row


async def revoke_key(db: Database, actor: Actor, key_id: str) -> ApiKey:
    """Revoke a key (revoking a revoked key changes nothing)."""
    async with db.write("apikey.revoke") as session:
        row = await _key(session, actor.tenant_id, key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        await append_audit_events(session, [actor.event("apikey.revoke", f"apikeys/{key_id}")])
    return row


async def rotate_key(db: Database, actor: Actor, key_id: str) -> tuple[ApiKey, str, ApiKey]:
    """Replace a key by a new one with the same role and name; the old one is revoked."""
    async with db.write("apikey.rotate") as session:
        old = await _key(session, actor.tenant_id, key_id)
        if old.revoked_at is not None:
            raise ApiKeyRevoked("the key is already revoked")
        new, token = new_api_key_row(actor.tenant_id, role=old.role, name=old.name)
        old.revoked_at = utcnow()
        session.add(new)
        await append_audit_events(
            session,
            [actor.event("apikey.rotate", f"apikeys/{key_id}", replaced_by=new.key_id)],
        )
    return new, token, old


async def hash_password(password: str, rounds: int) -> str:
    """A bcrypt hash of a password, computed off the event loop."""
    salt = bcrypt.gensalt(rounds)
    hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), salt)
    return hashed.decode()


async def create_account(
    db: Database,
    actor: Actor,
    *,
    username: str,
    full_name: str,
    email: str,
    phone: str,
    password: str,
    role: Role,
    consents: Sequence[tuple[str, bool]],
    bcrypt_rounds: int,
) -> uuid.UUID:
    """Create a platform account with a bcrypt password hash and its sign-up consents."""
    if not USERNAME.match(username):
        raise InvalidField("username", "username must be 3-64 letters, digits, '.', '_', '-'")
    if not full_name.strip():
        raise InvalidField("full_name", "full_name is required")
    if not EMAIL.match(email):
        raise InvalidField("email", "email must be an e-mail address")
    if not 12 <= len(password) <= 128:
        raise InvalidField("password", "password must be 12 to 128 characters")
    password_hash = await hash_password(password, bcrypt_rounds)
    now = utcnow()
    account = Account(
        id=uuid.uuid4(),
        tenant_id=actor.tenant_id,
        username=username,
        full_name=full_name,
        email=email,
        phone=phone,
        password_bcrypt=password_hash,
        role=role,
        status=AccountStatus.ACTIVE,
        created_at=now,
    )
    try:
        async with db.write("account.create") as session:
            session.add(account)
            await session.flush()
            session.add_all(
                ConsentEvent(
                    tenant_id=actor.tenant_id,
                    account_id=account.id,
                    purpose=purpose,
                    granted=granted,
                    source="signup",
                    request_id=actor.request_id,
                    recorded_at=now,
                )
                for purpose, granted in consents
            )
            await append_audit_events(
                session, [actor.event("account.create", f"accounts/{account.id}", role=role)]
            )
    except IntegrityError:
        raise UsernameTaken("an account with this username already exists") from None
    return account.id


async def set_fbr_token(db: Database, actor: Actor, token: str) -> dt.datetime:
    """Replace the tenant's FBR token (stored encrypted by the column type)."""
    if not token.strip():
        raise InvalidField("fbr_token", "fbr_token is required")
    now = utcnow()
    async with db.write("tenant.fbr_token") as session:
        tenant = await session.get(Tenant, actor.tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("tenant")
        tenant.fbr_token = token
        await append_audit_events(
            session, [actor.event("tenant.fbr_token_set", f"tenants/{actor.tenant_id}")]
        )
    return now
