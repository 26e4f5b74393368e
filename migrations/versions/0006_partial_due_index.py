"""Claims read a partial index of due invoices instead of sorting the whole backlog.

The (tenant_id, state, next_attempt_at) index cannot return QUEUED and RETRY_WAIT rows in
one next_attempt_at order, so each claim sorted every due row of the tenant (40 ms at 37k
queued, growing with the backlog). A partial index on (tenant_id, next_attempt_at) over the
due rows alone gives the order directly and stays as small as the queue.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("state IN ('QUEUED', 'RETRY_WAIT')")


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoices_tenant_due_at",
            ["tenant_id", "next_attempt_at"],
            unique=False,
            postgresql_where=DUE,
            sqlite_where=DUE,
        )
        batch_op.drop_index("ix_invoices_tenant_due")


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoices_tenant_due", ["tenant_id", "state", "next_attempt_at"], unique=False
        )
        batch_op.drop_index("ix_invoices_tenant_due_at")
