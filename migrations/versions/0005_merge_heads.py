"""Join the two branches (0002 privacy/audit, 0004 delivery/channels) into one head.

Revision ID: 0005
Revises: 0002, 0004
Create Date: 2026-11-26 05:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | Sequence[str] | None = ("0002", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to do: a merge point, so ``alembic upgrade head`` works again."""


def downgrade() -> None:
    """Nothing to do."""
