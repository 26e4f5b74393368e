"""The ``fbrhub`` command: run, migrate and administer the hub, or run the FBR simulator."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from server.commands import admin as cli_governance
from server.errors import HubError
from server.observability.telemetry import configure_logging, configure_metrics, configure_tracing
from server.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbrhub", description="SmartInvoicing FBR hub")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="run the gRPC hub and the forwarder (FBRHUB_* settings)")
    commands.add_parser("migrate", help="upgrade the database schema to the latest revision")
    refdata = commands.add_parser("refdata", help="FBR reference data").add_subparsers(
        dest="action", required=True
    )
    sync = refdata.add_parser("sync", help="fetch FBR's reference lists into the database")
    sync.add_argument("--tenant", required=True, help="tenant whose FBR token is used")
    status = commands.add_parser("status", help="queue health per tenant and FBR circuit state")
    status.add_argument(
        "--stuck-after",
        type=float,
        default=None,
        help="seconds (default FBRHUB_STUCK_AFTER_SECONDS)",
    )

    tenant = commands.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenant.add_parser("create", help="create a tenant; prints its id")
    create.add_argument("--ntn", required=True, help="seller NTN (7 digits) or CNIC (13 digits)")
    create.add_argument("--name", required=True, help="seller business name")
    create.add_argument("--province", required=True, help="seller province, e.g. PUNJAB")
    create.add_argument("--address", required=True, help="seller address")
    create.add_argument("--environment", choices=["sandbox", "production"], default="sandbox")
    create.add_argument("--fbr-token", required=True, help="the FBR (PRAL) security token")
    create.add_argument("--channel", choices=["di", "pos"], default="di", help="FBR API to use")
    create.add_argument("--pos-id", default="", help="POSID (POS channel only)")
    create.add_argument(
        "--scenarios", default=None, help="sandbox scenarios assigned by FBR, e.g. SN001,SN002"
    )

    apikey = commands.add_parser("apikey", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    key = apikey.add_parser("create", help="create an API key; prints it once")
    key.add_argument("--tenant", required=True, help="tenant id")
    key.add_argument("--role", default="erp", choices=cli_governance.ROLE_CHOICES)
    key.add_argument("--name", default="", help="a label for the key")
    cli_governance.add_commands(commands, apikey)

    sim = commands.add_parser("fbr-sim", help="run the FBR DI simulator", add_help=False)
    sim.add_argument("args", nargs=argparse.REMAINDER)
    return parser


async def _status(args: argparse.Namespace) -> int:

    from rich.console import Console
    from rich.table import Table

    from server.clock import utcnow
    from server.db.engine import Database
    from server.invoices.monitor import latest_circuit_alerts, queue_health

    settings = get_settings()
    stuck_after = args.stuck_after or settings.stuck_after_seconds
    db = Database(settings.database_url)
    try:
        async with db.read("cli.status") as session:
            health = await queue_health(session, utcnow(), stuck_after)
            circuits = await latest_circuit_alerts(session)
    finally:
        await db.dispose()
    states = [
        "QUEUED",
        "SENDING",
        "RETRY_WAIT",
        "IN_DOUBT",
        "ACCEPTED",
        "REJECTED_FBR",
        "REJECTED_LOCAL",
    ]
    table = Table(title=f"Queue health (stuck = pending longer than {stuck_after:.0f}s)")
    table.add_column("tenant")
    for state in states:
        table.add_column(state.lower(), justify="right")
    table.add_column("oldest pending", justify="right")
    table.add_column("stuck", justify="right")
    for entry in health:
        table.add_row(
            str(entry.tenant_id),
            *(str(entry.by_state.get(state, 0)) for state in states),
            f"{entry.oldest_pending_age_seconds:.0f}s" if entry.pending else "-",
            str(entry.stuck),
            style="bold red" if entry.stuck or entry.in_doubt else None,
        )
    console = Console(width=200)
    console.print(table)
    if not health:
        console.print("no invoices yet")
    for endpoint, alert in sorted(circuits.items()):
        state = "OPEN" if alert["kind"] == "FBR_CIRCUIT_OPEN" else "closed"
        console.print(
            f"FBR circuit {endpoint}: {state} (since {alert['time']:%Y-%m-%d %H:%M:%S} UTC)"
        )
    if not circuits:
        console.print("FBR circuits: no openings recorded")
    return 0


async def _refdata_sync(args: argparse.Namespace) -> int:
    import datetime as dt

    from clients.fbr.refdata.client import ReferenceDataError
    from server.access.tenants import load_tenant
    from server.db.engine import Database
    from server.invoices.reference_data import sync_reference_data

    settings = get_settings()
    db = Database(settings.database_url)
    try:
        tenant = await load_tenant(db, uuid.UUID(args.tenant))
        if tenant is None:
            raise LookupError("tenant not found")
        today = dt.datetime.now(dt.timezone(dt.timedelta(hours=5))).date()
        try:
            snapshot_id = await sync_reference_data(
                db, base_url=settings.fbr_base_url, token=tenant.fbr_token, on=today
            )
        except ReferenceDataError as exc:
            print(f"error: FBR reference data could not be fetched: {exc}", file=sys.stderr)
            return 2
    finally:
        await db.dispose()
    print(
        f"stored FBR reference snapshot {snapshot_id}; running hubs pick it up within "
        f"{settings.refdata_refresh_seconds:.0f}s"
    )
    return 0


async def _tenant_create(args: argparse.Namespace) -> int:
    from server.access.actor import Actor
    from server.access.tenants import create_tenant
    from server.db.engine import Database

    db = Database(get_settings().database_url)
    try:
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
    finally:
        await db.dispose()
    print(tenant_id)
    return 0


async def _apikey_create(args: argparse.Namespace) -> int:
    from server.access.actor import Actor
    from server.access.api_keys import create_api_key
    from server.db.engine import Database

    db = Database(get_settings().database_url)
    try:
        _, token = await create_api_key(
            db,
            uuid.UUID(args.tenant),
            role=args.role,
            name=args.name,
            actor=Actor("cli:apikey-create"),
        )
    finally:
        await db.dispose()
    print(token)
    print("Store this key now: it is shown only once.", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fbrhub`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fbr-sim"]:
        from clients.fbr_simulator.cli import main as simulator_main

        return simulator_main(argv[1:])
    args = _parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            from server.app import serve

            configure_tracing()
            configure_metrics()
            asyncio.run(serve(settings))
            return 0
        if args.command == "migrate":
            from server.db.migrate import upgrade

            upgrade(settings.database_url)
            print("database is at the latest schema revision")
            return 0
        if args.command == "refdata":
            return asyncio.run(_refdata_sync(args))
        if args.command == "status":
            return asyncio.run(_status(args))
        if args.command == "tenant":
            return asyncio.run(_tenant_create(args))
        if args.command == "apikey" and args.action == "create":
            return asyncio.run(_apikey_create(args))
        if args.command == "apikey" or args.command in cli_governance.COMMANDS:
            return cli_governance.run(args, settings)
    except (HubError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
