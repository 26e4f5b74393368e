"""Delivery engine: per-tenant claim index; result events may be alerts (no invoice).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoices_tenant_due", ["tenant_id", "state", "next_attempt_at"], unique=False
        )
    with op.batch_alter_table("result_events", schema=None) as batch_op:
        batch_op.alter_column("invoice_id", existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM result_events WHERE invoice_id IS NULL")
    with op.batch_alter_table("result_events", schema=None) as batch_op:
        batch_op.alter_column("invoice_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_tenant_due")
