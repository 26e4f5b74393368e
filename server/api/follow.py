"""The one follow loop behind every resumable event stream (results, audit).

Events are numbered per tenant in commit order, so "everything after N" is exact: a stream
reads pages of events after its position, and with ``follow`` it then waits for news and
reads again. The loop yields each event and, as heartbeats (``None``), the moments a
follower should be told the stream is alive: once when the backlog is drained (if asked)
and after each idle heartbeat interval. Memory per stream is one page.

When the hub starts shutting down (``FollowOptions.stop``) a following stream ends at once,
cleanly (status OK, its last cursor already sent): a deploy waits for in-flight work, not
for followers, which reconnect to another instance and resume from their cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Numbered(Protocol):
    """An event with its per-tenant sequence number."""

    seq: Any


E = TypeVar("E", bound=Numbered)


@dataclass(frozen=True)
class FollowOptions:
    """How a stream follows new events.

    Attributes:
        follow: keep the stream open after the backlog and send new events as they come.
        poll_seconds: longest wait for a wake-up before reading again (events written by
            another process without a notification are seen this late at worst).
        heartbeat_seconds: send a heartbeat after this long without events.
        announce_caught_up: send one heartbeat when the backlog is drained.
        stop: set when the hub shuts down; a following stream then ends.
    """

    follow: bool
    poll_seconds: float
    heartbeat_seconds: float
    announce_caught_up: bool = False
    stop: asyncio.Event | None = None


@dataclass(frozen=True)
class Step(Generic[E]):
    """One message of a stream: an event, or a heartbeat (``event`` None); ``after`` is the
    position to resume from once the message has been handled."""

    event: E | None
    after: int


async def follow_events(
    read_page: Callable[[int, int], Awaitable[Sequence[E]]],
    wait_for_news: Callable[[float], Awaitable[bool]],
    *,
    after: int,
    page_size: int,
    options: FollowOptions,
) -> AsyncIterator[Step[E]]:
    """Stream events after ``after``: the backlog, then (with ``follow``) new ones.

    Args:
        read_page: ``(after, limit)`` -> up to ``limit`` events numbered above ``after``,
            oldest first.
        wait_for_news: waits up to the given seconds for a wake-up; True if one came.
        after: the position to start after (0: from the beginning).
        page_size: events per read.
        options: follow, poll and heartbeat settings.
    """
    idle = 0.0
    caught_up = False
    while True:
        events = await read_page(after, page_size)
        for event in events:
            after = event.seq
            yield Step(event, after)
        if len(events) == page_size:
            continue
        if not options.follow or (options.stop is not None and options.stop.is_set()):
            return
        if options.announce_caught_up and not caught_up:
            # Tell the follower the backlog is drained: from here on it sees live events.
            caught_up = True
            yield Step(None, after)
        if events:
            idle = 0.0
        woke = await _wait(wait_for_news, options)
        if options.stop is not None and options.stop.is_set():
            return
        idle = 0.0 if woke else idle + options.poll_seconds
        if idle >= options.heartbeat_seconds:
            idle = 0.0
            yield Step(None, after)


async def _wait(wait_for_news: Callable[[float], Awaitable[bool]], options: FollowOptions) -> bool:
    """Wait for news, a poll interval at most, or until the hub stops."""
    if options.stop is None:
        return await wait_for_news(options.poll_seconds)
    news = asyncio.ensure_future(wait_for_news(options.poll_seconds))
    stop = asyncio.ensure_future(options.stop.wait())
    try:
        await asyncio.wait((news, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (news, stop):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return news.done() and not news.cancelled() and bool(news.result())
