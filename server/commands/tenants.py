"""``fbrhub tenant create``: register a seller; prints the new tenant's id."""

from __future__ import annotations

import argparse

from server.access.actor import Actor
from server.access.tenants import create_tenant
from server.commands.common import Commands, add_group, open_database
from server.db.models import FbrEnvironment
from server.settings import Settings


def add_commands(commands: Commands) -> None:
    """Add ``tenant create``."""
    tenant = add_group(commands, "tenant", "manage tenants")
    create = tenant.add_parser("create", help="create a tenant; prints its id")
    create.add_argument("--ntn", required=True, help="seller NTN (7 digits) or CNIC (13 digits)")
    create.add_argument("--name", required=True, help="seller business name")
    create.add_argument("--province", required=True, help="seller province, e.g. PUNJAB")
    create.add_argument("--address", required=True, help="seller address")
    create.add_argument(
        "--environment",
        choices=[environment.value for environment in FbrEnvironment],
        default=FbrEnvironment.SANDBOX.value,
    )
    create.add_argument("--fbr-token", required=True, help="the FBR (PRAL) security token")
    create.add_argument("--channel", choices=["di", "pos"], default="di", help="FBR API to use")
    create.add_argument("--pos-id", default="", help="POSID (POS channel only)")
    create.add_argument(
        "--scenarios", default=None, help="sandbox scenarios assigned by FBR, e.g. SN001,SN002"
    )
    create.set_defaults(run=run_create)


async def run_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create the tenant, audited as ``cli:tenant-create``, and print its id."""
    async with open_database(settings) as db:
        tenant_id = await create_tenant(
            db,
            seller_ntn_cnic=args.ntn,
            business_name=args.name,
            province=args.province,
            address=args.address,
            fbr_environment=args.environment,
            fbr_token=args.fbr_token,
            channel=args.channel,
            pos_id=args.pos_id,
            assigned_scenarios=args.scenarios.split(",") if args.scenarios else None,
            actor=Actor("cli:tenant-create"),
        )
    print(tenant_id)
    return 0
