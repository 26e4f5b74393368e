"""The invoice area's one wall clock.

Every component that needs "now" takes a ``clock`` callable defaulting to :func:`utcnow`, so
tests can inject time; this is the single place the real time is read.
"""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
