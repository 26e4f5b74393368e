"""In-process wake-ups: "something new happened on this topic".

Used so that the forwarder starts sending as soon as ingest commits, and results followers
see new events at once. Waiters always re-read the database after waking (the signal carries
no data), and wait with a timeout, so a missed signal (or a signal from another process,
which this does not carry) costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib


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
