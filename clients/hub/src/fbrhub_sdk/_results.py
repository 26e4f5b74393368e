"""The StreamResults follower shared by both clients: cursor store, reconnects, backoff.

The follower loads the cursor once, opens ``StreamResults`` from it, and yields each event.
The cursor of an event is saved when the caller comes back for the next one (the event is
then handled); heartbeats move the cursor too, so an idle follower keeps its place. When
the stream breaks with a retryable status (the hub restarting, a network cut) it opens a
new one from the last handled cursor after a backoff, so nothing is skipped and nothing
handled comes twice. An event being handled when the process died comes again after a
restart: handle events idempotently (by ``invoice_id`` and ``kind``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import grpc

from fbrhub.v1 import invoice_service_pb2
from fbrhub_sdk.errors import HubApiError
from fbrhub_sdk.outcomes import is_invoice_outcome
from fbrhub_sdk.retry import RetryPolicy

if TYPE_CHECKING:
    ResultsCall = grpc.aio.UnaryStreamCall[
        invoice_service_pb2.StreamResultsRequest, invoice_service_pb2.StreamResultsResponse
    ]

logger = logging.getLogger("fbrhub_sdk")

OpenResults = Callable[[str], "ResultsCall"]


class AsyncCursorStore:
    """Any cursor store seen through coroutines: sync stores are called directly."""

    def __init__(self, store: Any) -> None:
        if not (callable(getattr(store, "load", None)) and callable(getattr(store, "save", None))):
            raise TypeError("a cursor store needs load() and save(cursor) methods")
        self._store = store

    async def load(self) -> str:
        """The saved cursor ("" for none)."""
        cursor = self._store.load()
        if inspect.isawaitable(cursor):
            cursor = await cursor
        if not isinstance(cursor, str):
            raise TypeError(f"cursor store returned a {type(cursor).__name__}, not a str")
        return cursor

    async def save(self, cursor: str) -> None:
        """Save ``cursor``."""
        saved = self._store.save(cursor)
        if inspect.isawaitable(saved):
            await saved


@dataclass(frozen=True)
class FollowSettings:
    """How a results follower runs.

    Attributes:
        follow: keep the stream open for new events (False: stop at the end of the backlog).
        outcomes_only: skip hub alerts (``RESULT_KIND_ALERT``); their cursors still count.
        save_every: save the cursor after every n-th handled event (and at heartbeats).
        retry: when to reconnect after the stream broke.
    """

    follow: bool
    outcomes_only: bool
    save_every: int
    retry: RetryPolicy

    def __post_init__(self) -> None:
        if self.save_every < 1:
            raise ValueError("save_every must be at least 1")


class Follower:
    """Follows StreamResults for one caller, across reconnects.

    Args:
        open_stream: opens ``StreamResults`` from a cursor (with ``follow`` and metadata).
        store: where the cursor is kept.
        settings: follow, filtering, checkpointing and retry.
    """

    def __init__(
        self, open_stream: OpenResults, store: AsyncCursorStore, settings: FollowSettings
    ) -> None:
        self._open = open_stream
        self._store = store
        self._settings = settings
        self.reconnects = 0
        """How many times the stream was opened again after breaking."""

    async def events(self) -> AsyncIterator[invoice_service_pb2.StreamResultsResponse]:
        """The result messages that carry an event, each once, across reconnects.

        Raises:
            HubApiError: for a status not worth a retry (``CursorInvalidError`` for a bad
                saved cursor) or when the retry policy gives up.
        """
        cursor = await self._store.load()
        delays: Iterator[float] | None = None
        unsaved = 0
        while True:
            call = self._open(cursor)
            progressed = False
            try:
                async for message in call:
                    progressed = True
                    if not message.HasField("event"):  # a heartbeat: checkpoint
                        cursor = message.cursor
                        await self._store.save(cursor)
                        unsaved = 0
                        continue
                    if self._settings.outcomes_only and not is_invoice_outcome(message):
                        cursor = message.cursor
                        unsaved += 1
                        continue
                    yield message
                    # The caller came back for more: the event is handled.
                    cursor = message.cursor
                    unsaved += 1
                    if unsaved >= self._settings.save_every:
                        await self._store.save(cursor)
                        unsaved = 0
                if unsaved:
                    await self._store.save(cursor)
                    unsaved = 0
                if not self._settings.follow:
                    return
                delays, delay = self._next_delay(delays, progressed, grpc.StatusCode.OK)
                delay = self._settings.retry.max_backoff if delay is None else delay
            except grpc.aio.AioRpcError as error:
                delays, delay = self._next_delay(delays, progressed, error.code())
                if delay is None:
                    raise HubApiError.from_rpc_error(error) from None
            finally:
                if not call.done():
                    call.cancel()
            if unsaved:
                await self._store.save(cursor)
                unsaved = 0
            self.reconnects += 1
            logger.warning("StreamResults ended; reconnecting in %.2fs", delay or 0.0)
            await asyncio.sleep(delay or 0.0)

    def _next_delay(
        self, delays: Iterator[float] | None, progressed: bool, code: grpc.StatusCode
    ) -> tuple[Iterator[float], float | None]:
        """The delay before the next attempt (None: give up), restarting after progress."""
        if progressed or delays is None:
            delays = self._settings.retry.delays()
        # A follow stream the hub closed cleanly (shutting down) is reopened like a break.
        if code != grpc.StatusCode.OK and not self._settings.retry.retries(code):
            return delays, None
        return delays, next(delays, None)
