"""``fbrhub apikey create|list|rotate|revoke``: a tenant's API keys.

A new key is printed once on stdout; listings never show secrets. Creating a key is
audited as ``cli:apikey-create``, rotating and revoking as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import uuid

from server.access import api_keys
from server.access.actor import Actor
from server.access.roles import Role
from server.commands.common import (
    Commands,
    add_group,
    add_role_argument,
    cli_actor,
    open_database,
    show_new_key,
)
from server.settings import Settings


def add_commands(commands: Commands) -> None:
    """Add ``apikey create``, ``list``, ``rotate`` and ``revoke``."""
    apikey = add_group(commands, "apikey", "manage API keys")
    create = apikey.add_parser("create", help="create an API key; prints it once")
    create.add_argument("--tenant", required=True, help="tenant id")
    add_role_argument(create)
    create.add_argument("--name", default="", help="a label for the key")
    create.set_defaults(run=run_create)
    listing = apikey.add_parser("list", help="list a tenant's API keys (never the secrets)")
    listing.add_argument("--tenant", required=True, help="tenant id")
    listing.set_defaults(run=run_list)
    for action, text, run in (
        ("rotate", "replace a key; prints the new one once", run_rotate),
        ("revoke", "revoke a key", run_revoke),
    ):
        parser = apikey.add_parser(action, help=text)
        parser.add_argument("--tenant", required=True, help="tenant id")
        parser.add_argument("--key-id", required=True, help="the key's public id")
        parser.set_defaults(run=run)


async def run_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a key and print it once."""
    async with open_database(settings) as db:
        _, token = await api_keys.create_api_key(
            db,
            uuid.UUID(args.tenant),
            role=Role(args.role),
            name=args.name,
            actor=Actor("cli:apikey-create"),
        )
    show_new_key(token)
    return 0


async def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print one line per key: id, role, state and name, tab-separated."""
    async with open_database(settings) as db:
        rows = await api_keys.list_api_keys(db, uuid.UUID(args.tenant), limit=10_000)
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        print(f"{row.key_id}\t{row.role}\t{state}\t{row.name}")
    return 0


async def run_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """Replace a key by a new one and print the new one once."""
    async with open_database(settings) as db:
        _, token, _ = await api_keys.rotate_api_key(
            db, uuid.UUID(args.tenant), args.key_id, actor=cli_actor()
        )
    show_new_key(token)
    return 0


async def run_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a key."""
    async with open_database(settings) as db:
        await api_keys.revoke_api_key(db, uuid.UUID(args.tenant), args.key_id, actor=cli_actor())
    print(f"revoked {args.key_id}")
    return 0
