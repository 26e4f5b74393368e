"""Run the real hub (``server.app.start_hub``, ``FBRHUB_*`` settings) with a chosen FBR transport.

The forwarding benchmark starts the hub through this launcher to put httpx's own pool
(``httpx.AsyncHTTPTransport`` with limits sized to the concurrency) beside the default
aiohttp-backed transport. Everything else is ``fbrhub serve``.

Telemetry is set up from the ``OTEL_*`` variables as ``fbrhub serve`` does.

Run: ``python -m bench.hub_launcher --transport default|httpx``
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import httpx

from clients.fbr.client import FbrClient
from server.app import build_fbr_client, settle_garbage_collector, start_hub
from server.observability.logs import configure_logging
from server.observability.telemetry import configure_telemetry
from server.settings import Settings


async def serve(transport: str) -> None:
    """Start the hub and run it until SIGTERM."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    telemetry = configure_telemetry(
        instance_id=settings.worker_id, environment=settings.environment
    )
    if transport == "httpx":
        limits = httpx.Limits(
            max_connections=settings.forwarder_concurrency,
            max_keepalive_connections=settings.forwarder_concurrency,
        )
        fbr = FbrClient(
            base_url=settings.fbr_base_url,
            connect_timeout=settings.fbr_connect_timeout_seconds,
            read_timeout=settings.fbr_read_timeout_seconds,
            max_connections=settings.forwarder_concurrency,
            transport=httpx.AsyncHTTPTransport(limits=limits),
        )
    else:
        fbr = build_fbr_client(settings)
    hub = await start_hub(settings, fbr=fbr)
    settle_garbage_collector()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await hub.stop(grace=1.0)
    telemetry.shutdown()


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["default", "httpx"], default="default")
    asyncio.run(serve(parser.parse_args().transport))


if __name__ == "__main__":
    main()
