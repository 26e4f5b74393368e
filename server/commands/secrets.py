"""``fbrhub secrets rotate``: re-encrypt every tenant's FBR token with the newest key.

Run it after putting a new key first in ``FBRHUB_FBR_TOKEN_KEYS``; then the old key can be
removed. Each re-encrypted token is audited as ``secrets.rotate`` in its tenant's chain.
"""

from __future__ import annotations

import argparse

import sqlalchemy as sa

from server.audit.trail import NewAuditEvent, append_audit_events
from server.commands.common import Commands, add_group, open_database
from server.db.encryption import rotate_secret
from server.settings import Settings

# A plain view of the column, so the stored (encrypted) text is read and written as is.
TENANT_TOKENS = sa.table("tenants", sa.column("id", sa.Uuid()), sa.column("fbr_token", sa.String()))


def add_commands(commands: Commands) -> None:
    """Add ``secrets rotate``."""
    secrets = add_group(commands, "secrets", "secrets at rest")
    rotate = secrets.add_parser("rotate", help="re-encrypt every FBR token with the newest key")
    rotate.set_defaults(run=run_rotate)


async def run_rotate(args: argparse.Namespace, settings: Settings) -> int:  # noqa: ARG001
    """Re-encrypt every stored FBR token in one transaction."""
    async with open_database(settings) as db, db.write("secrets.rotate") as session:
        query = sa.select(TENANT_TOKENS.c.id, TENANT_TOKENS.c.fbr_token)
        rows = (await session.execute(query)).all()
        for row in rows:
            await session.execute(
                sa.update(TENANT_TOKENS)
                .where(TENANT_TOKENS.c.id == row.id)
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
