"""Alembic migrations: up, down and up again on both databases; models match the schema."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.db.migrate import downgrade, upgrade
from server.db.models import Base


def _sync(url: str) -> str:
    return url.replace("+aiosqlite", "")


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(_sync(url))
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(_sync(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_autogenerate_diff(database_url: str) -> None:
    assert _tables(database_url) == set(Base.metadata.tables)
    downgrade(database_url)
    assert _tables(database_url) == set()
    upgrade(database_url)
    assert _tables(database_url) == set(Base.metadata.tables)
    assert _diff(database_url) == []
