"""``fbrhub serve`` (the gRPC hub and the forwarder) and ``fbrhub migrate`` (the schema)."""

from __future__ import annotations

import argparse

from server.commands.common import Commands
from server.settings import Settings


def add_commands(commands: Commands) -> None:
    """Add ``serve`` and ``migrate``."""
    serve = commands.add_parser(
        "serve", help="run the gRPC hub and the forwarder (FBRHUB_* settings)"
    )
    serve.set_defaults(run=run_serve)
    migrate = commands.add_parser(
        "migrate", help="upgrade the database schema to the latest revision"
    )
    migrate.set_defaults(run=run_migrate)


async def run_serve(args: argparse.Namespace, settings: Settings) -> int:  # noqa: ARG001
    """Run the hub until SIGTERM or SIGINT, with tracing and metrics exported."""
    # Imported here: the hub itself (gRPC, the forwarder) is needed by this command only.
    from server.app import serve
    from server.observability.telemetry import configure_telemetry

    telemetry = configure_telemetry(
        instance_id=settings.worker_id, environment=settings.environment
    )
    try:
        await serve(settings)
    finally:
        telemetry.shutdown()
    return 0


async def run_migrate(args: argparse.Namespace, settings: Settings) -> int:  # noqa: ARG001
    """Upgrade the database to the latest schema revision."""
    from server.db.migrate import upgrade_async

    await upgrade_async(settings.database_url)
    print("database is at the latest schema revision")
    return 0
