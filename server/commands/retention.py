"""``fbrhub retention run``: one sweep of the retention policy, as the hub runs it daily."""

from __future__ import annotations

import argparse
import datetime as dt

from server.clock import utcnow
from server.commands.common import Commands, add_group, open_database
from server.privacy.retention import sweep
from server.settings import Settings


def add_commands(commands: Commands) -> None:
    """Add ``retention run``."""
    retention = add_group(commands, "retention", "data retention")
    run = retention.add_parser(
        "run", help="anonymise closed accounts and purge invoices past retention, once"
    )
    run.add_argument("--as-of", default="", help="sweep as of this ISO time (default: now)")
    run.set_defaults(run=run_sweep)


def as_of(text: str) -> dt.datetime:
    """The sweep time: ``text`` as an ISO time (UTC unless it says otherwise), or now."""
    if not text:
        return utcnow()
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


async def run_sweep(args: argparse.Namespace, settings: Settings) -> int:
    """Anonymise closed accounts that are due and purge invoices past retention."""
    now = as_of(args.as_of)
    async with open_database(settings) as db:
        report = await sweep(db, retention_years=settings.retention_years, now=now)
    print(
        f"anonymised {report.anonymised_accounts} accounts, "
        f"purged {report.purged_invoices} invoices"
    )
    return 0
