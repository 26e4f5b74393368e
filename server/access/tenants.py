"""Tenants: creating one, its FBR credential, and the profile ingest and delivery load.

A tenant is a seller using the hub: its FBR registration (NTN/CNIC, business name,
province, address), which FBR environment and API its invoices go to, and its FBR token
(stored encrypted by the column type). Creating a tenant and replacing its token are
audited in the same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from clients.fbr import reference
from clients.fbr.channels import Channel
from server.access.actor import SETUP, Actor
from server.audit.trail import append_audit_events
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import FbrEnvironment, Tenant
from server.errors import InvalidField, NotFound


@dataclass(frozen=True)
class TenantProfile:
    """A tenant's seller block and FBR credentials.

    Attributes:
        id: tenant id.
        seller_ntn_cnic: the seller's NTN (7 digits) or CNIC (13 digits).
        business_name: seller business name.
        province: seller province (FBR's exact name).
        address: seller address.
        fbr_environment: ``sandbox`` or ``production``.
        fbr_token: the FBR bearer token (a secret: never log it).
        channel: ``di`` (Digital Invoicing) or ``pos`` (IMS fiscal).
        pos_id: the POSID, for the POS channel.
        assigned_scenarios: sandbox scenarios FBR assigned to the seller (None: all).
    """

    id: uuid.UUID
    seller_ntn_cnic: str
    business_name: str
    province: str
    address: str
    fbr_environment: str
    fbr_token: str
    channel: Channel = Channel.DI
    pos_id: str = ""
    assigned_scenarios: frozenset[str] | None = None

    @classmethod
    def from_row(cls, row: Tenant) -> TenantProfile:
        """Build the profile from a tenants row."""
        return cls(
            id=row.id,
            seller_ntn_cnic=row.seller_ntn_cnic,
            business_name=row.business_name,
            province=row.province,
            address=row.address,
            fbr_environment=row.fbr_environment,
            fbr_token=row.fbr_token,
            channel=Channel(row.channel or Channel.DI),
            pos_id=row.pos_id or "",
            assigned_scenarios=frozenset(
                s.strip() for s in row.assigned_scenarios.split(",") if s.strip()
            )
            if row.assigned_scenarios
            else None,
        )

    def seller_fields(self) -> dict[str, str]:
        """The seller block of a normalised invoice."""
        return {
            "seller_ntn_cnic": self.seller_ntn_cnic,
            "seller_business_name": self.business_name,
            "seller_province": self.province,
            "seller_address": self.address,
        }


async def load_tenant(db: Database, tenant_id: uuid.UUID) -> TenantProfile | None:
    """Load a tenant's profile; None if it does not exist."""
    async with db.read("tenant.load") as session:
        row = await session.get(Tenant, tenant_id)
    return TenantProfile.from_row(row) if row is not None else None


_SELLER_ID = re.compile(r"\d{7}|\d{13}", re.ASCII)
_POS_ID = re.compile(r"\d{1,18}", re.ASCII)
# An OAuth bearer token (RFC 6750 b64token): what PRAL issues, and all an HTTP header may carry.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)
MAX_FBR_TOKEN_LENGTH = 512
# The tenants columns (characters).
_TEXT_LIMITS = {"business_name": 200, "address": 300}


def check_fbr_token(token: str) -> None:
    """Refuse an FBR token that cannot be one (never naming its value).

    Raises:
        InvalidField: empty, longer than 512 characters, or not a bearer token's characters.
    """
    if not token.strip():
        raise InvalidField("fbr_token", "fbr_token is required")
    if len(token) > MAX_FBR_TOKEN_LENGTH:
        raise InvalidField(
            "fbr_token", f"fbr_token must be at most {MAX_FBR_TOKEN_LENGTH} characters"
        )
    if not _BEARER_TOKEN.fullmatch(token):
        raise InvalidField(
            "fbr_token", "fbr_token must be the token PRAL issued: letters, digits and -._~+/="
        )


def _checked_scenarios(assigned_scenarios: Iterable[str] | None) -> str | None:
    """The stored form of the assigned scenarios (comma-separated, sorted; None: all)."""
    if assigned_scenarios is None:
        return None
    scenarios = sorted({s.strip().upper() for s in assigned_scenarios if s.strip()})
    unknown = [s for s in scenarios if s not in reference.SCENARIO_SALE_TYPES]
    if unknown or not scenarios:
        raise InvalidField("assigned_scenarios", "scenarios are FBR's SN001 ... SN028")
    return ",".join(scenarios)


@dataclass(frozen=True)
class NewTenant:
    """A tenant's registration, checked (:meth:`checked`) before it is stored."""

    seller_ntn_cnic: str
    business_name: str
    province: str
    address: str
    fbr_environment: str
    fbr_token: str
    channel: str
    pos_id: str
    assigned_scenarios: str | None

    @classmethod
    def checked(
        cls,
        *,
        seller_ntn_cnic: str,
        business_name: str,
        province: str,
        address: str,
        fbr_environment: str,
        fbr_token: str,
        channel: str,
        pos_id: str,
        assigned_scenarios: Iterable[str] | None,
    ) -> NewTenant:
        """Every field checked against FBR's lists and the columns, and against the others.

        A tenant FBR would refuse every invoice of (a city for a province, an empty token,
        scenarios in production) is refused here, where it can still be fixed.

        Raises:
            InvalidField: the first field at fault (named, never its value).
        """
        if fbr_environment not in {e.value for e in FbrEnvironment}:
            raise InvalidField("fbr_environment", "fbr_environment must be sandbox or production")
        if not _SELLER_ID.fullmatch(seller_ntn_cnic):
            raise InvalidField("seller_ntn_cnic", "seller NTN/CNIC must be 7 or 13 digits")
        for name, limit in _TEXT_LIMITS.items():
            value = {"business_name": business_name, "address": address}[name]
            if not value.strip() or len(value) > limit or "\x00" in value:
                raise InvalidField(name, f"{name} is required: 1 to {limit} characters")
        if not reference.is_known_province(province):
            raise InvalidField(
                "province", f"province must be one of FBR's: {', '.join(reference.PROVINCES)}"
            )
        check_fbr_token(fbr_token)
        if channel not in set(Channel):
            raise InvalidField("channel", "channel must be di or pos")
        if channel == Channel.POS and not _POS_ID.fullmatch(pos_id):
            raise InvalidField("pos_id", "a POS tenant needs its POSID: 1 to 18 digits")
        if channel == Channel.DI and pos_id:
            raise InvalidField("pos_id", "a POSID is only for a POS tenant")
        scenarios = _checked_scenarios(assigned_scenarios)
        if scenarios is not None and (fbr_environment != "sandbox" or channel != Channel.DI):
            raise InvalidField(
                "assigned_scenarios", "scenarios are for Digital Invoicing sandbox tenants only"
            )
        return cls(
            seller_ntn_cnic,
            business_name.strip(),
            province.upper(),
            address.strip(),
            fbr_environment,
            fbr_token,
            channel,
            pos_id,
            scenarios,
        )


async def create_tenant(
    db: Database,
    *,
    seller_ntn_cnic: str,
    business_name: str,
    province: str,
    address: str,
    fbr_environment: str,
    fbr_token: str,
    channel: str = Channel.DI,
    pos_id: str = "",
    assigned_scenarios: Iterable[str] | None = None,
    actor: Actor = SETUP,
) -> uuid.UUID:
    """Create a tenant, audited as ``tenant.create``, and return its id.

    Args:
        db: the hub's database.
        seller_ntn_cnic: the seller's NTN (7 digits) or CNIC (13 digits).
        business_name: seller business name.
        province: seller province (FBR's exact name).
        address: seller address.
        fbr_environment: ``sandbox`` or ``production``.
        fbr_token: the FBR (PRAL) security token; stored encrypted.
        channel: ``di`` (Digital Invoicing) or ``pos`` (IMS fiscal, needs ``pos_id``).
        pos_id: the POSID, for the POS channel.
        assigned_scenarios: sandbox scenarios FBR assigned to the seller (None: all).
        actor: who creates the tenant.

    Raises:
        InvalidField: a value the hub cannot take (see :meth:`NewTenant.checked`).
    """
    new = NewTenant.checked(
        seller_ntn_cnic=seller_ntn_cnic,
        business_name=business_name,
        province=province,
        address=address,
        fbr_environment=fbr_environment,
        fbr_token=fbr_token,
        channel=channel,
        pos_id=pos_id,
        assigned_scenarios=assigned_scenarios,
    )
    tenant = Tenant(
        id=uuid.uuid4(),
        seller_ntn_cnic=new.seller_ntn_cnic,
        business_name=new.business_name,
        province=new.province,
        address=new.address,
        fbr_environment=new.fbr_environment,
        fbr_token=new.fbr_token,
        channel=new.channel,
        pos_id=new.pos_id or None,
        assigned_scenarios=new.assigned_scenarios,
        result_seq=0,
        created_at=utcnow(),
    )
    async with db.write("tenant.create") as session:
        session.add(tenant)
        await append_audit_events(
            session, [actor.event(tenant.id, "tenant.create", f"tenants/{tenant.id}")]
        )
    return tenant.id


async def set_fbr_token(
    db: Database, tenant_id: uuid.UUID, token: str, *, actor: Actor
) -> dt.datetime:
    """Replace a tenant's FBR token (stored encrypted by the column type).

    Returns:
        When the token was replaced.

    Raises:
        InvalidField: the token is blank or cannot be a token (:func:`check_fbr_token`).
        NotFound: no such tenant.
    """
    check_fbr_token(token)
    now = utcnow()
    async with db.write("tenant.fbr_token") as session:
        tenant = await session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("tenant")
        tenant.fbr_token = token
        await append_audit_events(
            session, [actor.event(tenant_id, "tenant.fbr_token_set", f"tenants/{tenant_id}")]
        )
    return now
