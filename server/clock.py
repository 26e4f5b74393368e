"""The hub's one notion of "now": timezone-aware UTC.

Components that decide by time take a :data:`Clock` (defaulting to :func:`utcnow`), so tests
can move time without sleeping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeAlias

Clock: TypeAlias = Callable[[], dt.datetime]
"""A source of the current time; it must return timezone-aware UTC datetimes."""


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
