"""Running the async client from synchronous code: an event loop thread and a rendezvous.

The synchronous client owns one event loop, running in a daemon thread, on which the async
client lives. A call from the caller's thread becomes a task on that loop, started with a
copy of the caller's ``contextvars`` context (so its OpenTelemetry context goes out as
``traceparent``, as with the async client).

Code of the caller's own (the invoice iterable, a cursor store) must run in the caller's
thread, never on the loop: ORMs such as Django's refuse to run where an event loop is
running, and their connections belong to the thread that opened them. So a task that needs
such code asks the caller's thread to run it (:meth:`CallerThread.run`) and waits; the
caller's thread, blocked on the call, serves these requests until the task finishes. An
async iterator is consumed the same way, one item at a time, so the caller's pace sets the
task's pace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Callable, TypeVar

_T = TypeVar("_T")
_CALL, _ITEM, _FINISHED = "call", "item", "finished"
_Message = tuple[str, Any]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class CallerThread:
    """Lets a task on the loop run a function in the caller's thread and await its result."""

    def __init__(self, loop: asyncio.AbstractEventLoop, inbox: queue.SimpleQueue[_Message]):
        self._loop = loop
        self._inbox = inbox

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)``, run in the caller's thread; its exception is raised here."""
        future: asyncio.Future[_T] = self._loop.create_future()
        self._inbox.put((_CALL, (function, args, future)))
        return await future


class _Task:
    """A coroutine run as a task on the loop; says so in the inbox when it has ended."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, coroutine: Any, inbox: queue.SimpleQueue[_Message]
    ) -> None:
        self._loop = loop
        self._coroutine = coroutine
        self._inbox = inbox
        self._task: asyncio.Task[Any] | None = None
        self._outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def start(self) -> None:
        """Create the task (on the loop's thread)."""
        self._task = self._loop.create_task(self._coroutine)
        self._task.add_done_callback(self._ended)

    def cancel(self) -> None:
        """Cancel the task (on the loop's thread, after :meth:`start`)."""
        if self._task is not None:
            self._task.cancel()

    def result(self) -> Any:
        """The task's result, or its exception raised (once it has ended)."""
        return self._outcome.result(timeout=0)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self._outcome.cancel()
        elif task.exception() is not None:
            self._outcome.set_exception(task.exception())
        else:
            self._outcome.set_result(task.result())
        self._inbox.put((_FINISHED, None))


class Bridge:
    """An event loop in a daemon thread, and the ways for a caller's thread to use it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve_loop, name="fbrhub-sdk", daemon=True)
        self._thread.start()

    def _serve_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def close(self) -> None:
        """Stop the loop and its thread (after the client's channel was closed)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has stopped the loop."""
        return not self._thread.is_alive()

    def run(self, make: Callable[[CallerThread], Awaitable[_T]]) -> _T:
        """Run ``make(caller)`` on the loop and wait for its result in this thread.

        Args:
            make: builds the awaitable; it may use the :class:`CallerThread` it is given to
                run code in this thread.
        """
        inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        awaitable = make(CallerThread(self.loop, inbox))

        async def task() -> _T:
            return await awaitable

        running = self._start(task(), inbox)
        finished = False
        try:
            finished = self._serve(inbox, None)
            result: _T = running.result()
            return result
        finally:
            if not finished:
                self._abandon(running, inbox)

    def iterate(self, make: Callable[[CallerThread], AsyncIterator[_T]]) -> Iterator[_T]:
        """Consume ``make(caller)`` on the loop, yielding its items in this thread.

        The iterator advances only when the caller asks for the next item. Leaving the loop
        early (``break``, an exception) cancels the iterator on the loop and waits for it.
        """
        inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        iterator = make(CallerThread(self.loop, inbox))

        async def pump() -> None:
            try:
                async for item in iterator:
                    resume: asyncio.Future[None] = self.loop.create_future()
                    inbox.put((_ITEM, (item, resume)))
                    await resume
            finally:
                close = getattr(iterator, "aclose", None)
                if close is not None:
                    await close()

        running = self._start(pump(), inbox)
        finished = False
        try:
            while True:
                items: list[Any] = []
                finished = self._serve(inbox, items)
                if finished:
                    running.result()
                    return
                item, resume = items[0]
                yield item
                self.loop.call_soon_threadsafe(_settle, resume, None, None)
        finally:
            if not finished:
                self._abandon(running, inbox)

    def _start(self, coroutine: Any, inbox: queue.SimpleQueue[_Message]) -> _Task:
        task = _Task(self.loop, coroutine, inbox)
        # call_soon_threadsafe captures this thread's contextvars context: the task is
        # created, and so runs, in a copy of it.
        self.loop.call_soon_threadsafe(task.start)
        return task

    def _serve(self, inbox: queue.SimpleQueue[_Message], items: list[Any] | None) -> bool:
        """Run the task's calls until it yields an item (False) or finishes (True)."""
        while True:
            kind, payload = inbox.get()
            if kind == _FINISHED:
                return True
            if kind == _ITEM and items is not None:
                items.append(payload)
                return False
            if kind == _CALL:
                self._answer(*payload)

    def _answer(
        self, function: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> None:
        try:
            result = function(*args)
        except Exception as error:
            self.loop.call_soon_threadsafe(_settle, future, None, error)
        except BaseException:
            # KeyboardInterrupt and the like end the whole call, here and on the loop.
            self.loop.call_soon_threadsafe(future.cancel)
            raise
        else:
            self.loop.call_soon_threadsafe(_settle, future, result, None)

    def _abandon(self, task: _Task, inbox: queue.SimpleQueue[_Message]) -> None:
        """Cancel the task and wait until it is gone, refusing to run more caller code."""
        self.loop.call_soon_threadsafe(task.cancel)
        while True:
            kind, payload = inbox.get()
            if kind == _FINISHED:
                return
            pending = payload[2] if kind == _CALL else payload[1]
            self.loop.call_soon_threadsafe(pending.cancel)
