"""Engines and the unit of work.

``Database`` owns the engine(s) of one process. Code never shares a session: each unit of
work opens its own with ``async with db.write() as session`` (a transaction that commits on
success) or ``db.read()``. On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so
that two writers queue on the busy timeout instead of failing on a lock upgrade, and reads
use a separate engine with ordinary deferred transactions so they never wait for writers.

Each unit of work is a span named after it (``ingest.store_batch``, ``outbox.claim``...) with
``db.system.name`` and ``db.namespace`` (and ``server.address``/``server.port`` on
PostgreSQL). A *quiet* unit (``quiet=True``: the polls of the forwarder, the monitor and the
stream followers) gets its span only if it reports work with :func:`mark_work`, or fails:
an idle hub exports nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.util.types import AttributeValue
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from server.observability.semconv import DB_NAMESPACE, DB_SYSTEM_NAME
from server.observability.tracing import get_tracer, mark_error, record_span

_tracer = get_tracer(__name__)
# Where a quiet unit of work keeps the attributes of the work it reported.
_WORK = "fbrhub.work"

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


def mark_work(
    session: AsyncSession, attributes: Mapping[str, AttributeValue] | None = None
) -> None:
    """Say that a quiet unit of work did something, so that it is traced after all.

    Args:
        session: the unit's session.
        attributes: added to its span, e.g. how many invoices a claim took.
    """
    session.info[_WORK] = dict(attributes or {})


def _span_attributes(url: str, dialect: str) -> dict[str, AttributeValue]:
    parsed = make_url(url)
    attributes: dict[str, AttributeValue] = {DB_SYSTEM_NAME: dialect}
    if parsed.database:
        # For SQLite the file name only: a path can name a person's home directory.
        attributes[DB_NAMESPACE] = (
            Path(parsed.database).name if dialect == "sqlite" else parsed.database
        )
    if parsed.host:
        attributes[SERVER_ADDRESS] = parsed.host
        attributes[SERVER_PORT] = parsed.port or 5432
    return attributes


class Database:
    """The engines and session factories of one hub process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.write_engine, self.read_engine = create_engines(url)
        self.dialect = self.write_engine.dialect.name
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._attributes = _span_attributes(url, self.dialect)

    @property
    def is_postgres(self) -> bool:
        """True when the database is PostgreSQL."""
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(
        self, name: str = "db.write", *, quiet: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """Open a session in a write transaction that commits when the block succeeds.

        Args:
            name: the unit of work, which names its span.
            quiet: trace it only if it calls :func:`mark_work` or fails (for polls).
        """
        async with (
            self._traced(name, quiet) as work,
            self._write_sessions() as session,
            session.begin(),
        ):
            work.append(session)
            yield session

    @asynccontextmanager
    async def read(
        self, name: str = "db.read", *, quiet: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """Open a session for reading; nothing it does is committed (arguments: :meth:`write`)."""
        async with (
            self._traced(name, quiet) as work,
            self._read_sessions() as session,
            session.begin(),
        ):
            work.append(session)
            yield session

    @asynccontextmanager
    async def _traced(self, name: str, quiet: bool) -> AsyncIterator[list[AsyncSession]]:
        """The span of one unit of work; yields a list that receives the unit's session."""
        work: list[AsyncSession] = []
        if not quiet:
            # Exceptions are recorded by class only (mark_error): a driver's message can
            # quote the values of a row.
            with _tracer.start_as_current_span(
                name,
                attributes=self._attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    yield work
                except Exception as exc:
                    mark_error(span, exc)
                    raise
            return
        started = time.time_ns()
        try:
            yield work
        except Exception as exc:
            record_span(_tracer, name, started, self._attributes, error=exc)
            raise
        reported = work[0].info.get(_WORK) if work else None
        if reported is not None:
            record_span(_tracer, name, started, {**self._attributes, **reported})

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
