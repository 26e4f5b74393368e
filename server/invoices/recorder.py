"""The outcome recorder: the forwarder's finished attempts, written to the outbox in batches.

A recording transaction has a fixed cost of a few ms, so at modest rates one per answer
would dominate the forwarder's CPU. Finished attempts therefore go to a queue, and one task
writes up to :data:`RECORD_BATCH_MAX` of them per transaction, waiting
:data:`RECORD_LINGER_SECONDS` for more when fewer than :data:`RECORD_BATCH_TARGET` wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from clients.fbr.responses import OutcomeKind
from server.db.notify import Notifier
from server.invoices.intake import INVOICES_TOPIC
from server.invoices.outbox import Outbox
from server.invoices.outcomes import Finished

logger = logging.getLogger(__name__)

# Outcomes are recorded in batches: wait this long for more when fewer than the target wait.
RECORD_LINGER_SECONDS = 0.02
RECORD_BATCH_TARGET = 32
RECORD_BATCH_MAX = 500


class OutcomeRecorder:
    """Records finished attempts in batches, from its own task."""

    def __init__(self, outbox: Outbox, notifier: Notifier, stopping: asyncio.Event) -> None:
        """Create a recorder; :meth:`start` runs it.

        Args:
            outbox: where outcomes are written.
            notifier: wakes the forwarder when a retry is scheduled.
            stopping: set when the forwarder stops; batches are then written without waiting.
        """
        self._outbox = outbox
        self._notifier = notifier
        self._stopping = stopping
        self._finished: asyncio.Queue[Finished] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def add(self, finished: Finished) -> None:
        """Queue a finished attempt for recording."""
        self._finished.put_nowait(finished)

    def start(self) -> None:
        """Start recording in a task of its own."""
        self._task = asyncio.create_task(self._run(), name="forwarder-recorder")

    async def close(self) -> None:
        """Wait until every finished attempt added is recorded, then stop the task."""
        await self._finished.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._record(batch)
            for _ in batch:
                self._finished.task_done()

    async def _next_batch(self) -> list[Finished]:
        batch = [await self._finished.get()]
        if self._finished.qsize() < RECORD_BATCH_TARGET and not self._stopping.is_set():
            # Let answers gather: see the module docstring.
            await asyncio.sleep(RECORD_LINGER_SECONDS)
        while not self._finished.empty() and len(batch) < RECORD_BATCH_MAX:
            batch.append(self._finished.get_nowait())
        return batch

    async def _record(self, batch: list[Finished]) -> None:
        """Write the batch, retrying until the database takes it."""
        while True:
            try:
                await self._outbox.record(batch)
                break
            except Exception:
                logger.exception("recording delivery outcomes failed; retrying")
                await asyncio.sleep(1.0)
        if any(f.outcome.kind is OutcomeKind.RETRYABLE for f in batch):
            self._notifier.notify(INVOICES_TOPIC)
