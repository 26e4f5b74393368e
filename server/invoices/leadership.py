"""Which hub process speaks for the cluster: the one holding the monitor's advisory lock.

Queue gauges and queue alerts describe the whole database, so exactly one process should
report them, or a dashboard summing over processes would count every queue N times. On
PostgreSQL that process holds a session-level advisory lock on a connection of its own,
for as long as it runs: when it stops or dies the connection closes, the lock is free, and
the next process to ask takes over. SQLite serves one process, which always leads.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.db.engine import Database

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every hub process.
MONITOR_LOCK_ID: Final = 0x6662_7268_7562


class Leadership:
    """Whether this process is the cluster's reporter; ask again before each round."""

    def __init__(self, db: Database, lock_id: int = MONITOR_LOCK_ID) -> None:
        """Create a leadership claim on ``db`` (nothing is held until :meth:`held`)."""
        self._db = db
        self._lock_id = lock_id
        self._engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None

    async def held(self) -> bool:
        """True if this process leads now, taking the lead when it is free."""
        if not self._db.is_postgres:
            return True
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                return True
            except Exception:
                # The connection (and with it the lock) is gone: another process may lead.
                logger.warning("lost the monitor lock's connection; asking again")
                await self._drop()
        return await self._acquire()

    async def _acquire(self) -> bool:
        if self._engine is None:
            # A connection outside the pool, in autocommit: it holds the lock, never a
            # transaction (an idle open transaction would hold back vacuum).
            self._engine = create_async_engine(
                self._db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
        connection = await self._engine.connect()
        try:
            got = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:id)"), {"id": self._lock_id}
            )
        except BaseException:
            await connection.close()
            raise
        if got:
            self._connection = connection
            return True
        await connection.close()
        return False

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def release(self) -> None:
        """Give up the lead (closing the connection frees the lock) and the engine."""
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
