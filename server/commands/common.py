"""What the ``fbrhub`` command groups share: how a command is declared, the database it
opens, the actor it audits as, and how a new API key is shown.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from server.access.actor import Actor
from server.access.roles import Role
from server.db.encryption import configure_secrets
from server.db.engine import Database
from server.settings import Settings

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The sub-parser set a command group adds its commands to."""

Command: TypeAlias = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
"""A command: runs with the parsed arguments and the settings; returns the exit code."""


def add_group(commands: Commands, name: str, text: str) -> Commands:
    """Add ``fbrhub <name>``, whose own commands (``fbrhub <name> <action>``) are required."""
    return commands.add_parser(name, help=text).add_subparsers(dest="action", required=True)


def add_role_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--role``: one of the :class:`Role` values, ``erp`` unless given."""
    parser.add_argument("--role", default=Role.ERP.value, choices=[role.value for role in Role])


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The hub's database for one command, with the FBR token keys installed."""
    configure_secrets(settings)
    db = Database(settings.database_url)
    try:
        yield db
    finally:
        await db.dispose()


def cli_actor() -> Actor:
    """The person at the terminal, as the audit trail records them, with a fresh request id."""
    return Actor(f"cli:{getpass.getuser()}"[:64], f"cli-{uuid.uuid4()}")


def show_new_key(token: str) -> None:
    """Print a new API key on stdout (and only there), with a warning on stderr."""
    print(token)
    print("Store this key now: it is shown only once.", file=sys.stderr)
