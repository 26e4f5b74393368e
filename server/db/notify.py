"""In-process wake-ups: "something new happened on this topic".

Used so that the forwarder starts sending as soon as ingest commits, and results followers
see new events at once. Waiters always re-read the database after waking (the signal carries
no data), and wait with a timeout, so a missed signal (or a signal from another process,
which :class:`PostgresListener` relays on PostgreSQL) costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)


class Notifier:
    """Broadcast signals keyed by topic (e.g. ``"invoices"``, ``"results:<tenant id>"``)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, topic: str) -> None:
        """Wake everyone currently waiting on ``topic``."""
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()

    async def wait(self, topic: str, timeout: float) -> bool:
        """Wait for the next signal on ``topic``; False if ``timeout`` seconds passed first."""
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
                return True
        return False


PG_CHANNEL = "fbrhub"


async def publish(session: AsyncSession, topics: Iterable[str]) -> None:
    """Announce topics to other hub processes when the session's transaction commits.

    PostgreSQL delivers ``NOTIFY`` only on commit, so listeners never wake before the data is
    visible. On SQLite (one process) this does nothing; the in-process notifier suffices.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for topic in sorted(set(topics)):
        await session.execute(
            text("SELECT pg_notify(:channel, :topic)").bindparams(channel=PG_CHANNEL, topic=topic)
        )


class PostgresListener:
    """Relays ``NOTIFY fbrhub`` from other hub processes into the local :class:`Notifier`."""

    def __init__(self, database_url: str, notifier: Notifier) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._notifier = notifier
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the background (reconnecting after failures)."""
        self._task = asyncio.create_task(self._run(), name="pg-listener")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {PG_CHANNEL}")
                    delay = 0.5
                    async for notification in connection.notifies():
                        self._notifier.notify(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Followers still poll, so a lost listener costs latency, not correctness.
                logger.warning("LISTEN connection lost; reconnecting in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
