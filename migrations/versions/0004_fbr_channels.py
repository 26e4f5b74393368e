"""FBR exactness: POS channel and scenarios per tenant, debit-note links, reference snapshots.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=8), server_default="di", nullable=False)
        )
        batch_op.add_column(sa.Column("pos_id", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("assigned_scenarios", sa.String(length=300), nullable=True))
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("original_invoice_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            "ix_invoices_tenant_fbr_number", ["tenant_id", "fbr_invoice_number"], unique=False
        )
        batch_op.create_index("ix_invoices_original", ["original_invoice_id"], unique=False)
    op.create_table(
        "reference_snapshots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("reference_snapshots")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_original")
        batch_op.drop_index("ix_invoices_tenant_fbr_number")
        batch_op.drop_column("original_invoice_id")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("assigned_scenarios")
        batch_op.drop_column("pos_id")
        batch_op.drop_column("channel")
