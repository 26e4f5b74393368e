"""``fbrhub status``: queue health per tenant and the FBR circuit state, as a table."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from server.clock import utcnow
from server.commands.common import Commands, open_database
from server.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from server.invoices.monitor import TenantQueueHealth

# The columns of the table, in lifecycle order.
STATES = (
    "QUEUED",
    "SENDING",
    "RETRY_WAIT",
    "IN_DOUBT",
    "ACCEPTED",
    "REJECTED_FBR",
    "REJECTED_LOCAL",
)


def add_commands(commands: Commands) -> None:
    """Add ``status``."""
    status = commands.add_parser("status", help="queue health per tenant and FBR circuit state")
    status.add_argument(
        "--stuck-after",
        type=float,
        default=None,
        help="seconds (default FBRHUB_STUCK_AFTER_SECONDS)",
    )
    status.set_defaults(run=run_status)


def health_table(health: Sequence[TenantQueueHealth], stuck_after: float) -> Table:
    """One row per tenant: invoices per state, the oldest pending age, and the stuck count."""
    from rich.table import Table

    table = Table(title=f"Queue health (stuck = pending longer than {stuck_after:.0f}s)")
    table.add_column("tenant")
    for state in STATES:
        table.add_column(state.lower(), justify="right")
    table.add_column("oldest pending", justify="right")
    table.add_column("stuck", justify="right")
    for entry in health:
        table.add_row(
            str(entry.tenant_id),
            *(str(entry.by_state.get(state, 0)) for state in STATES),
            f"{entry.oldest_pending_age_seconds:.0f}s" if entry.pending else "-",
            str(entry.stuck),
            style="bold red" if entry.stuck or entry.in_doubt else None,
        )
    return table


def print_circuits(console: Console, circuits: Mapping[str, Mapping[str, Any]]) -> None:
    """The last circuit alert per FBR endpoint: open or closed, and since when."""
    for endpoint, alert in sorted(circuits.items()):
        state = "OPEN" if alert["kind"] == "FBR_CIRCUIT_OPEN" else "closed"
        since: dt.datetime = alert["time"]
        console.print(f"FBR circuit {endpoint}: {state} (since {since:%Y-%m-%d %H:%M:%S} UTC)")
    if not circuits:
        console.print("FBR circuits: no openings recorded")


async def run_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the queue health table and the FBR circuit state."""
    # Imported here: the monitor pulls in the invoice path, which the other commands and
    # ``fbrhub --help`` do without.
    from rich.console import Console

    from server.invoices.monitor import latest_circuit_alerts, queue_health

    stuck_after = args.stuck_after or settings.stuck_after_seconds
    async with open_database(settings) as db, db.read("cli.status") as session:
        health = await queue_health(session, utcnow(), stuck_after)
        circuits = await latest_circuit_alerts(session)
    console = Console(width=200)
    console.print(health_table(health, stuck_after))
    if not health:
        console.print("no invoices yet")
    print_circuits(console, circuits)
    return 0
