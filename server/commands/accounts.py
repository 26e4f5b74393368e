"""``fbrhub account create``: a platform account; the password is read from stdin."""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid

from server.access.accounts import create_account
from server.access.roles import Role
from server.commands.common import (
    Commands,
    add_group,
    add_role_argument,
    cli_actor,
    open_database,
)
from server.settings import Settings


def add_commands(commands: Commands) -> None:
    """Add ``account create``."""
    account = add_group(commands, "account", "manage platform accounts")
    create = account.add_parser("create", help="create an account; reads the password from stdin")
    create.add_argument("--tenant", required=True, help="tenant id")
    create.add_argument("--username", required=True)
    create.add_argument("--full-name", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--phone", default="")
    add_role_argument(create)
    create.set_defaults(run=run_create)


def read_password() -> str:
    """The password: the first line of stdin when piped, else asked for without echo."""
    return sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()


async def run_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create the account, audited as ``cli:<user>``, and print its id."""
    password = read_password()
    async with open_database(settings) as db:
        account_id = await create_account(
            db,
            uuid.UUID(args.tenant),
            username=args.username,
            full_name=args.full_name,
            email=args.email,
            phone=args.phone,
            password=password,
            role=Role(args.role),
            consents=(),
            bcrypt_rounds=settings.password_bcrypt_rounds,
            actor=cli_actor(),
        )
    print(account_id)
    return 0
