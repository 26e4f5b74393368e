"""The ``fbrhub`` command: run, migrate and administer the hub, or run the FBR simulator.

Each command group lives in its own module and adds its commands to the parser; this module
builds the parser, runs the chosen command, and turns the errors a user can cause (a bad
value, an unknown tenant or key) into ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from server.commands import (
    accounts,
    keys,
    refdata,
    retention,
    secrets,
    serve,
    status,
    tenants,
)
from server.commands.common import Command
from server.errors import HubError
from server.observability.logs import configure_logging
from server.settings import get_settings, settings_error

# In the order ``fbrhub --help`` lists them.
GROUPS = (serve, refdata, status, tenants, keys, accounts, retention, secrets)


def build_parser() -> argparse.ArgumentParser:
    """The ``fbrhub`` argument parser; each command sets ``run`` to its :data:`Command`."""
    parser = argparse.ArgumentParser(prog="fbrhub", description="SmartInvoicing FBR hub")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(commands)
    # Listed for --help only: main() hands ``fbr-sim ...`` to the simulator before parsing.
    sim = commands.add_parser("fbr-sim", help="run the FBR DI simulator", add_help=False)
    sim.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fbrhub`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fbr-sim"]:
        from clients.fbr_simulator.cli import main as simulator_main

        return simulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"error: {settings_error(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    command: Command = args.run
    try:
        return asyncio.run(command(args, settings))
    except (HubError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
