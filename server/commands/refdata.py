"""``fbrhub refdata sync``: fetch FBR's reference lists into the database."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid

from server.access.tenants import load_tenant
from server.commands.common import Commands, add_group, open_database
from server.errors import NotFound
from server.settings import Settings

# FBR's reference lists are dated in Pakistan Standard Time (UTC+5, no daylight saving).
PAKISTAN_TIME = dt.timezone(dt.timedelta(hours=5))


def add_commands(commands: Commands) -> None:
    """Add ``refdata sync``."""
    refdata = add_group(commands, "refdata", "FBR reference data")
    sync = refdata.add_parser("sync", help="fetch FBR's reference lists into the database")
    sync.add_argument("--tenant", required=True, help="tenant whose FBR token is used")
    sync.set_defaults(run=run_sync)


async def run_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Store a new reference snapshot, fetched with the tenant's FBR token; 2 if FBR fails."""
    # Imported here: the FBR client and the invoice path are needed by this command only.
    from clients.fbr.refdata.client import ReferenceDataError
    from server.invoices.reference_data import sync_reference_data

    async with open_database(settings) as db:
        tenant = await load_tenant(db, uuid.UUID(args.tenant))
        if tenant is None:
            raise NotFound("tenant")
        try:
            snapshot_id = await sync_reference_data(
                db,
                base_url=settings.fbr_base_url,
                token=tenant.fbr_token,
                on=dt.datetime.now(PAKISTAN_TIME).date(),
            )
        except ReferenceDataError as exc:
            print(f"error: FBR reference data could not be fetched: {exc}", file=sys.stderr)
            return 2
    print(
        f"stored FBR reference snapshot {snapshot_id}; running hubs pick it up within "
        f"{settings.refdata_refresh_seconds:.0f}s"
    )
    return 0
