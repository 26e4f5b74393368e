"""The tenant profile that ingest and delivery need, loaded once per stream or batch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from server.db.engine import Database
from server.db.models import Tenant


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
    channel: str = "di"
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
            channel=row.channel or "di",
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
