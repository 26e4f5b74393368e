"""Where a results follower keeps its place: the cursor store protocol and two stores.

:meth:`~fbrhub_sdk.HubClient.results` loads the cursor once when it starts and saves the
cursor of each message once the caller has handled it, so that a worker that restarts
resumes exactly after the last message it handled (a message being handled when the worker
died comes again: handle results idempotently, e.g. by ``invoice_id`` and ``kind``).

Any object with ``load()`` and ``save(cursor)`` is a store: a row in the ERP's own database
is often the best one, saved in the same transaction as the effect of the message. The async
client also accepts stores whose methods are coroutines.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["CursorStore", "FileCursorStore", "MemoryCursorStore"]


@runtime_checkable
class CursorStore(Protocol):
    """Keeps one results cursor (an opaque string; ``""`` means "from the first event")."""

    def load(self) -> str:
        """The saved cursor, or ``""`` when none was saved yet."""

    def save(self, cursor: str) -> None:
        """Remember ``cursor`` (replacing the previous one)."""


class MemoryCursorStore:
    """A cursor kept in memory: for tests, and for followers that start from a known cursor.

    Args:
        cursor: the cursor to start from.
    """

    def __init__(self, cursor: str = "") -> None:
        self._cursor = cursor
        self._lock = threading.Lock()

    def load(self) -> str:
        """The cursor saved last (or the initial one)."""
        with self._lock:
            return self._cursor

    def save(self, cursor: str) -> None:
        """Remember ``cursor``."""
        with self._lock:
            self._cursor = cursor


class FileCursorStore:
    """A cursor kept in a small text file, replaced atomically on every save.

    A save writes a temporary file beside the target, flushes it to disk (unless ``fsync``
    is False) and renames it over the target, so a crash leaves either the old cursor or
    the new one, never a torn file.

    Args:
        path: the file; its directory must exist.
        fsync: flush each save to disk (durable across power loss; slower).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync

    def load(self) -> str:
        """The saved cursor, or ``""`` when the file does not exist yet."""
        try:
            return self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return ""

    def save(self, cursor: str) -> None:
        """Replace the file's content with ``cursor``."""
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="ascii") as file:
                file.write(cursor)
                if self._fsync:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
