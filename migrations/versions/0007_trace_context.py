"""Trace context with queued work: the ingest span of each invoice, the trace of each attempt.

``invoices.traceparent`` keeps the W3C traceparent of the span that queued the invoice, so
that every delivery attempt (a trace of its own) links back to it; GetInvoice returns its
trace id. ``delivery_attempts.trace_id`` names the trace of each attempt. Both are NULL for
rows written before, or while nothing was traced.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_column("trace_id")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
