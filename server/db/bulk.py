"""Bulk inserts: ``COPY`` on PostgreSQL, ``executemany`` elsewhere.

``COPY`` is several times cheaper per row than multi-row INSERT through the ORM (research
perf-anchors §b), and the hot paths (ingest, delivery outcomes, audit trail) insert a row or
more per invoice. Rows are dicts keyed by column name; JSON columns are serialised here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import orjson
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession


async def copy_rows(
    session: AsyncSession,
    table: str,
    rows: Sequence[dict[str, Any]],
    *,
    json_columns: Collection[str] = (),
) -> None:
    """``COPY`` rows into ``table`` inside the session's transaction (PostgreSQL only)."""
    if not rows:
        return
    columns = tuple(rows[0])
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    async with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            await copy.write_row(
                [
                    orjson.dumps(row[c]).decode()
                    if c in json_columns and row[c] is not None
                    else row[c]
                    for c in columns
                ]
            )


async def insert_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    json_columns: Collection[str] = (),
) -> None:
    """Insert rows the fastest way the database offers (no conflict handling)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        await copy_rows(session, table.name, rows, json_columns=json_columns)
    else:
        await session.execute(insert(table), list(rows))
