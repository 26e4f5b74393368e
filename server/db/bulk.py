"""Bulk inserts: ``COPY`` on PostgreSQL, ``executemany`` elsewhere.

``COPY`` is several times cheaper per row than multi-row INSERT through the ORM (see
docs/benchmarks.md for the figures on this stack), and the hot paths (ingest, delivery
outcomes, audit trail) insert a row or more per invoice. Rows are dicts keyed by column name;
JSON columns are serialised here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import orjson
from psycopg.types.json import Json
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

_COLUMN_TYPES = "fbrhub.copy_column_types"
"""Key of the per-connection cache of column type oids, in the pooled connection's ``info``."""


async def copy_rows(
    session: AsyncSession,
    table: str,
    rows: Sequence[dict[str, Any]],
    *,
    json_columns: Collection[str] = (),
) -> None:
    """``COPY`` rows into ``table`` inside the session's transaction (PostgreSQL only).

    The copy is binary, typed with the table's own column types: PostgreSQL parses nothing
    and psycopg picks each column's dumper once rather than per value, which makes a row of
    an invoice about half as costly as text ``COPY``. So values must have the Python type
    the column takes (``uuid.UUID`` for ``uuid``, an aware datetime for ``timestamptz``, an
    ``int`` for an integer column); the values of ``json_columns`` are dumped with orjson.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    json_positions = [i for i, c in enumerate(columns) if c in json_columns]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    async with driver.cursor() as cursor:
        oids = await _column_types(raw.info, cursor, table)
        async with cursor.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types([oids[c] for c in columns])
            for row in rows:
                values = [row[c] for c in columns]
                for i in json_positions:
                    if values[i] is not None:
                        values[i] = Json(values[i], orjson.dumps)
                await copy.write_row(values)


async def _column_types(cache: dict[Any, Any], cursor: Any, table: str) -> dict[str, int]:
    """Column name -> type oid of ``table``, asked once per connection.

    Column types do not change under a running hub, and a temporary table (ingest's staging
    table) exists per connection anyway, so the connection's ``info`` is the right cache.
    """
    known: dict[str, dict[str, int]] = cache.setdefault(_COLUMN_TYPES, {})
    if table not in known:
        await cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        )
        known[table] = dict(await cursor.fetchall())
    return known[table]


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
