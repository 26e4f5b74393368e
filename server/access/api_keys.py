"""API keys: their format and hashing, their verification, and their audited lifecycle.

An API key looks like ``fbrhub_<key id>_<secret>``. The key id is stored in clear to find
the row; only the SHA-256 of the secret is stored. SHA-256 (not bcrypt) is right here: the
secret is 256 random bits, so there is nothing to brute-force, and the check runs on every RPC.

Keys are created, rotated and revoked only through this module, by the AdminService and
the command line alike; each act is audited in the same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.access.actor import SETUP, Actor
from server.access.roles import Role
from server.audit.trail import append_audit_events
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import ApiKey, Tenant
from server.errors import ApiKeyRevoked, NotFound

KEY_PREFIX = "fbrhub"


# --- the key format ----------------------------------------------------------------------------


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key(token: str) -> tuple[str, str] | None:
    """Split ``fbrhub_<key id>_<secret>`` into (key id, secret); None if malformed."""
    prefix, sep, rest = token.partition("_")
    if prefix != KEY_PREFIX or not sep:
        return None
    key_id, sep, secret = rest.partition("_")
    if not sep or not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


def _new_key(tenant_id: uuid.UUID, role: Role, name: str) -> tuple[ApiKey, str]:
    """A new key's row (to add to a session) and the full key to hand over once."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        key_id=key_id,
        secret_sha256=_sha256(secret),
        role=role.value,
        name=name,
        created_at=utcnow(),
    )
    return row, f"{KEY_PREFIX}_{key_id}_{secret}"


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant and role of the API key used.

    Attributes:
        tenant_id: the key's tenant; every query of the call is scoped to it.
        role: the key's role.
        key_id: the public id of the key (safe to log).
    """

    tenant_id: uuid.UUID
    role: Role
    key_id: str


class ApiKeyVerifier:
    """Checks bearer tokens against the stored key hashes, with a short positive cache.

    Only a key that verified is cached, under its secret's digest: a wrong secret for a key
    id that was just used is looked up in the database like an unknown key id, so the two
    cost the same and the answer time tells nothing about which key ids exist. What keeps
    failed attempts cheap is the per-peer limit in front of this (:mod:`server.access.failures`).
    """

    def __init__(self, db: Database, *, cache_seconds: float = 30.0) -> None:
        self._db = db
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[str, Caller, float]] = {}

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (after revocation), so this process refuses it at once."""
        self._cache.pop(key_id, None)

    def cached(self, token: str, now: float) -> Caller | None:
        """The caller of a key verified within the cache time; None otherwise (no I/O)."""
        parsed = parse_api_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        found = self._cache.get(key_id)
        if found is None or found[2] <= now:
            return None
        return found[1] if hmac.compare_digest(found[0], _sha256(secret)) else None

    async def verify(self, token: str, now: float) -> Caller | None:
        """Return the caller for a valid, unrevoked key, else None."""
        parsed = parse_api_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        digest = _sha256(secret)
        cached = self._cache.get(key_id)
        if cached is not None and cached[2] > now and hmac.compare_digest(cached[0], digest):
            return cached[1]
        async with self._db.read("apikey.verify") as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        # The same comparison whether or not the key id exists.
        stored = row.secret_sha256 if row is not None else _UNKNOWN_KEY_DIGEST
        matches = hmac.compare_digest(stored, digest)
        if row is None or row.revoked_at is not None or not matches:
            if row is None or row.revoked_at is not None:
                self._cache.pop(key_id, None)
            return None
        caller = Caller(tenant_id=row.tenant_id, role=Role(row.role), key_id=key_id)
        self._cache[key_id] = (row.secret_sha256, caller, now + self._cache_seconds)
        return caller


_UNKNOWN_KEY_DIGEST = _sha256(secrets.token_urlsafe(32))


# --- the lifecycle -----------------------------------------------------------------------------


async def create_api_key(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    role: Role | str = Role.ERP,
    name: str = "",
    actor: Actor = SETUP,
) -> tuple[ApiKey, str]:
    """Create an API key of a tenant, audited as ``apikey.create``.

    Returns:
        The key's row, and the full key to hand over (shown once, never stored).

    Raises:
        ValueError: ``role`` is not a :class:`Role`.
        NotFound: no such tenant.
    """
    row, token = _new_key(tenant_id, Role(role), name)
    async with db.write("apikey.create") as session:
        if await session.scalar(select(Tenant.id).where(Tenant.id == tenant_id)) is None:
            raise NotFound("tenant")
        session.add(row)
        await append_audit_events(
            session,
            [actor.event(tenant_id, "apikey.create", f"apikeys/{row.key_id}", role=row.role)],
        )
    return row, token


async def list_api_keys(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, str] | None = None,
    limit: int,
) -> list[ApiKey]:
    """A tenant's keys, oldest first, after a (created_at, key_id) position if given."""
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
    if after is not None:
        created_at, key_id = after
        query = query.where(
            (ApiKey.created_at > created_at)
            | ((ApiKey.created_at == created_at) & (ApiKey.key_id > key_id))
        )
    async with db.read("apikey.list") as session:
        rows = await session.scalars(query.order_by(ApiKey.created_at, ApiKey.key_id).limit(limit))
        return list(rows)


async def _locked_key(session: AsyncSession, tenant_id: uuid.UUID, key_id: str) -> ApiKey:
    """A tenant's key, locked until commit; NotFound also for another tenant's key."""
    row = await session.scalar(
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id, ApiKey.key_id == key_id)
        .with_for_update()
    )
    if row is None:
        raise NotFound("api key")
    return row


async def rotate_api_key(
    db: Database, tenant_id: uuid.UUID, key_id: str, *, actor: Actor
) -> tuple[ApiKey, str, ApiKey]:
    """Replace a key by a new one with the same role and name, audited as ``apikey.rotate``.

    Returns:
        The new key's row, the full new key (shown once), and the old key's row, now revoked.

    Raises:
        NotFound: no such key in the tenant.
        ApiKeyRevoked: the key is already revoked.
    """
    async with db.write("apikey.rotate") as session:
        old = await _locked_key(session, tenant_id, key_id)
        if old.revoked_at is not None:
            raise ApiKeyRevoked("the key is already revoked")
        new, token = _new_key(tenant_id, Role(old.role), old.name)
        old.revoked_at = utcnow()
        session.add(new)
        await append_audit_events(
            session,
            [actor.event(tenant_id, "apikey.rotate", f"apikeys/{key_id}", replaced_by=new.key_id)],
        )
    return new, token, old


async def revoke_api_key(
    db: Database, tenant_id: uuid.UUID, key_id: str, *, actor: Actor
) -> ApiKey:
    """Revoke a key, audited as ``apikey.revoke`` (revoking a revoked key changes nothing).

    Raises:
        NotFound: no such key in the tenant.
    """
    async with db.write("apikey.revoke") as session:
        row = await _locked_key(session, tenant_id, key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        await append_audit_events(
            session, [actor.event(tenant_id, "apikey.revoke", f"apikeys/{key_id}")]
        )
    return row
