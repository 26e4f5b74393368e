"""``fbrhub`` subcommands for access control, accounts, retention and secrets (issue 4).

``apikey list|rotate|revoke``, ``account create``, ``retention run [--as-of TIME]`` and
``secrets rotate``. Every act is audited with the actor ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import sys
import uuid
from typing import Any

import sqlalchemy as sa

from server.access.roles import Role
from server.clock import utcnow
from server.db.engine import Database
from server.settings import Settings

COMMANDS = frozenset({"account", "retention", "secrets"})
ROLE_CHOICES = [role.value for role in Role]


def add_commands(commands: Any, apikey: Any) -> None:
    """Add the subcommands to the ``fbrhub`` parser (``apikey`` is its sub-parser set)."""
    listing = apikey.add_parser("list", help="list a tenant's API keys (never the secrets)")
    listing.add_argument("--tenant", required=True, help="tenant id")
    for action, text in (
        ("rotate", "replace a key; prints the new one once"),
        ("revoke", "revoke a key"),
    ):
        parser = apikey.add_parser(action, help=text)
        parser.add_argument("--tenant", required=True, help="tenant id")
        parser.add_argument("--key-id", required=True, help="the key's public id")

    account = commands.add_parser("account", help="manage platform accounts").add_subparsers(
        dest="action", required=True
    )
    create = account.add_parser("create", help="create an account; reads the password from stdin")
    create.add_argument("--tenant", required=True, help="tenant id")
    create.add_argument("--username", required=True)
    create.add_argument("--full-name", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--phone", default="")
    create.add_argument("--role", default="erp", choices=ROLE_CHOICES)

    retention = commands.add_parser("retention", help="data retention").add_subparsers(
        dest="action", required=True
    )
    run = retention.add_parser(
        "run", help="anonymise closed accounts and purge invoices past retention, once"
    )
    run.add_argument("--as-of", default="", help="sweep as of this ISO time (default: now)")

    secrets = commands.add_parser("secrets", help="secrets at rest").add_subparsers(
        dest="action", required=True
    )
    secrets.add_parser("rotate", help="re-encrypt every FBR token with the newest key")


def _actor() -> Any:
    from server.access.actor import Actor

    return Actor(f"cli:{getpass.getuser()}"[:64], f"cli-{uuid.uuid4()}")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from server.access import api_keys
    from server.access.accounts import create_account
    from server.db.encryption import configure_secrets

    configure_secrets(settings)
    db = Database(settings.database_url)
    try:
        if args.command == "apikey":
            tenant_id = uuid.UUID(args.tenant)
            if args.action == "list":
                for row in await api_keys.list_api_keys(db, tenant_id, limit=10_000):
                    state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
                    print(f"{row.key_id}\t{row.role}\t{state}\t{row.name}")
                return 0
            if args.action == "rotate":
                _, token, _ = await api_keys.rotate_api_key(
                    db, tenant_id, args.key_id, actor=_actor()
                )
                print(token)
                print("Store this key now: it is shown only once.", file=sys.stderr)
                return 0
            await api_keys.revoke_api_key(db, tenant_id, args.key_id, actor=_actor())
            print(f"revoked {args.key_id}")
            return 0
        if args.command == "account":
            password = (
                sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
            )
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
                actor=_actor(),
            )
            print(account_id)
            return 0
        if args.command == "retention":
            from server.privacy.retention import sweep

            now = dt.datetime.fromisoformat(args.as_of) if args.as_of else utcnow()
            if now.tzinfo is None:
                now = now.replace(tzinfo=dt.UTC)
            report = await sweep(db, retention_years=settings.retention_years, now=now)
            print(
                f"anonymised {report.anonymised_accounts} accounts, "
                f"purged {report.purged_invoices} invoices"
            )
            return 0
        return await _rotate_secrets(db)
    finally:
        await db.dispose()


async def _rotate_secrets(db: Database) -> int:
    from server.audit.trail import NewAuditEvent, append_audit_events
    from server.db.encryption import rotate_secret

    # A plain view of the column, so the stored (encrypted) text is read and written as is.
    tenants = sa.table("tenants", sa.column("id", sa.Uuid()), sa.column("fbr_token", sa.String()))
    async with db.write("secrets.rotate") as session:
        rows = (await session.execute(sa.select(tenants.c.id, tenants.c.fbr_token))).all()
        for row in rows:
            await session.execute(
                sa.update(tenants)
                .where(tenants.c.id == row.id)
                .values(fbr_token=rotate_secret(row.fbr_token))
            )
        await append_audit_events(
            session,
            [
                NewAuditEvent(row.id, "cli:secrets-rotate", "secrets.rotate", f"tenants/{row.id}")
                for row in rows
            ],
        )
    print(f"re-encrypted {len(rows)} FBR tokens with the newest key")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one of these subcommands."""
    return asyncio.run(_run(args, settings))
