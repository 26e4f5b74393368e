"""Run the FBR simulator from the command line until SIGINT or SIGTERM.

Example::

    python -m clients.fbr_simulator --port 8700 --token demo-token=7000007:sandbox
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from clients.fbr_simulator.app import FbrSimulator, TokenGrant

logger = logging.getLogger(__name__)
_ENVIRONMENTS = ("sandbox", "production")


def parse_token(text: str) -> tuple[str, TokenGrant]:
    """Parse ``TOKEN=NTN[:sandbox|production]`` (sandbox when not given).

    Raises:
        argparse.ArgumentTypeError: if the text is not of that form.
    """
    token, separator, grant = text.partition("=")
    seller, _, environment = grant.partition(":")
    environment = environment or "sandbox"
    if not separator or not token or not seller or environment not in _ENVIRONMENTS:
        raise argparse.ArgumentTypeError(
            f"expected TOKEN=NTN[:sandbox|production], got {text.split('=', 1)[0]!r}=..."
        )
    return token, TokenGrant(seller, environment)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbr-sim", description="A stand-in for FBR's Digital Invoicing API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8700, help="port (0: any free port)")
    parser.add_argument(
        "--token",
        type=parse_token,
        action="append",
        required=True,
        metavar="TOKEN=NTN[:sandbox|production]",
        help="a security token and the seller it belongs to (repeatable)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction answered with a gateway 503"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --error-rate")
    return parser


async def _serve(simulator: FbrSimulator, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    url = await simulator.start(host, port)
    logger.info("FBR simulator listening on %s", url)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
    logger.info("FBR simulator stopped after issuing %d numbers", len(simulator.issued))


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; returns the process exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    simulator = FbrSimulator(
        tokens=dict(args.token), latency=args.latency, error_rate=args.error_rate, seed=args.seed
    )
    asyncio.run(_serve(simulator, args.host, args.port))
    return 0
