"""Tenants and API keys: creation, key hashing and lookup.

An API key looks like ``fbrhub_<key id>_<secret>``. The key id is stored in clear to find
the row; only the SHA-256 of the secret is stored. SHA-256 (not bcrypt) is right here: the
secret is 256 random bits, so there is nothing to brute-force, and the check runs on every RPC.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from server.access.roles import Role
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import ApiKey, FbrEnvironment, Tenant

KEY_PREFIX = "fbrhub"


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


@dataclass(frozen=True)
class NewApiKey:
    """A freshly created key. ``secret`` is shown once and never stored."""

    key_id: str
    secret: str
    tenant_id: uuid.UUID
    role: Role


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


async def create_tenant(
    db: Database,
    *,
    seller_ntn_cnic: str,
    business_name: str,
    province: str,
    address: str,
    fbr_environment: str,
    fbr_token: str,
    channel: str = "di",
    pos_id: str = "",
    assigned_scenarios: Iterable[str] | None = None,
) -> uuid.UUID:
    """Create a tenant and return its id.

    Args:
        channel: ``di`` (Digital Invoicing) or ``pos`` (IMS fiscal, needs ``pos_id``).
        assigned_scenarios: sandbox scenarios FBR assigned to the seller (None: all).
    """
    if fbr_environment not in {e.value for e in FbrEnvironment}:
        raise ValueError("fbr_environment must be 'sandbox' or 'production'")
    if not (seller_ntn_cnic.isdigit() and len(seller_ntn_cnic) in (7, 13)):
        raise ValueError("seller NTN/CNIC must be 7 or 13 digits")
    if channel not in ("di", "pos"):
        raise ValueError("channel must be 'di' or 'pos'")
    if channel == "pos" and not pos_id.isdigit():
        raise ValueError("a POS tenant needs its numeric POSID")
    scenarios = sorted({s.strip().upper() for s in assigned_scenarios or () if s.strip()})
    if any(not (len(s) == 5 and s.startswith("SN0") and s[2:].isdigit()) for s in scenarios):
        raise ValueError("scenarios look like SN001 ... SN028")
    tenant = Tenant(
        id=uuid.uuid4(),
        seller_ntn_cnic=seller_ntn_cnic,
        business_name=business_name,
        province=province,
        address=address,
        fbr_environment=fbr_environment,
        fbr_token=fbr_token,
        channel=channel,
        pos_id=pos_id or None,
        assigned_scenarios=",".join(scenarios) if assigned_scenarios is not None else None,
        result_seq=0,
        created_at=utcnow(),
    )
    async with db.write("tenant.create") as session:
        session.add(tenant)
    return tenant.id


async def create_api_key(
    db: Database, tenant_id: uuid.UUID, *, role: Role | str = Role.ERP, name: str = ""
) -> tuple[NewApiKey, str]:
    """Create an API key; returns the key and the full token to hand over (shown once)."""
    row, token = new_api_key_row(tenant_id, role=role, name=name)
    async with db.write("apikey.create") as session:
        if await session.get(Tenant, tenant_id) is None:
            raise LookupError("tenant not found")
        session.add(row)
    secret = token.removeprefix(f"{KEY_PREFIX}_{row.key_id}_")
    return NewApiKey(row.key_id, secret, tenant_id, Role(role)), token


def new_api_key_row(tenant_id: uuid.UUID, *, role: Role | str, name: str) -> tuple[ApiKey, str]:
    """A new key's row (to add to a session) and the full token to hand over once."""
    role = Role(role)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        key_id=key_id,
        secret_sha256=_sha256(secret),
        role=role,
        name=name,
        created_at=utcnow(),
    )
    return row, f"{KEY_PREFIX}_{key_id}_{secret}"


class ApiKeyVerifier:
    """Checks bearer tokens against the stored key hashes, with a short positive cache."""

    def __init__(self, db: Database, *, cache_seconds: float = 30.0) -> None:
        self._db = db
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[str, Caller, float]] = {}

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (after revocation), so this process refuses it at once."""
        self._cache.pop(key_id, None)

    async def verify(self, token: str, now: float) -> Caller | None:
        """Return the caller for a valid, unrevoked key, else None."""
        parsed = parse_api_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        digest = _sha256(secret)
        cached = self._cache.get(key_id)
        if cached is not None and cached[2] > now:
            return cached[1] if hmac.compare_digest(cached[0], digest) else None
        async with self._db.read("apikey.verify") as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        if row is None or row.revoked_at is not None:
            self._cache.pop(key_id, None)
            return None
        if not hmac.compare_digest(row.secret_sha256, digest):
            return None
        caller = Caller(tenant_id=row.tenant_id, role=Role(row.role), key_id=key_id)
        self._cache[key_id] = (row.secret_sha256, caller, now + self._cache_seconds)
        return caller
