"""Engines and the unit of work.

``Database`` owns the engine(s) of one process. Code never shares a session: each unit of
work opens its own with ``async with db.write() as session`` (a transaction that commits on
success) or ``db.read()``. On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so
that two writers queue on the busy timeout instead of failing on a lock upgrade, and reads
use a separate engine with ordinary deferred transactions so they never wait for writers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_tracer = trace.get_tracer(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_COMMON_OPTIONS: dict[str, Any] = {
    # SQL errors must never carry invoice values (personal data) into logs.
    "hide_parameters": True,
    # JSON columns are on the ingest hot path; orjson is ~15x faster than json.
    "json_serializer": _json_dumps,
    "json_deserializer": orjson.loads,
}


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(
        url, pool_size=4 if immediate else 8, max_overflow=4, **_COMMON_OPTIONS
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: even switching the journal mode may wait for a lock.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin_sql)

    return engine


def create_engines(url: str) -> tuple[AsyncEngine, AsyncEngine]:
    """Create the (write, read) engines for a database URL; the same engine off SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False)
    engine = create_async_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, **_COMMON_OPTIONS
    )
    return engine, engine


class Database:
    """The engines and session factories of one hub process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.write_engine, self.read_engine = create_engines(url)
        self.dialect = self.write_engine.dialect.name
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        """True when the database is PostgreSQL."""
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self, name: str = "db.write") -> AsyncIterator[AsyncSession]:
        """Open a session in a write transaction that commits when the block succeeds."""
        with _tracer.start_as_current_span(name, attributes={"db.system": self.dialect}):
            async with self._write_sessions() as session, session.begin():
                yield session

    @asynccontextmanager
    async def read(self, name: str = "db.read") -> AsyncIterator[AsyncSession]:
        """Open a session for reading; nothing it does is committed."""
        with _tracer.start_as_current_span(name, attributes={"db.system": self.dialect}):
            async with self._read_sessions() as session, session.begin():
                yield session

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
