"""Conversions every servicer uses: times and dates, with the bounds a client may send."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from server.errors import InvalidField

# The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    """A datetime as a protobuf Timestamp (None stays unset)."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def time_from_proto(stamp: Timestamp, path: str) -> dt.datetime:
    """A Timestamp sent by a client as an aware UTC datetime.

    Raises:
        InvalidField: seconds or nanos outside what a Timestamp may hold.
    """
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not 0 <= stamp.nanos < 10**9:
        raise InvalidField(
            path, f"{path} must be a time between 0001-01-01 and 9999-12-31 (nanos 0-999999999)"
        )
    return stamp.ToDatetime(dt.UTC)


def date_from_text(text: str, path: str) -> dt.date:
    """A date sent as ``YYYY-MM-DD``.

    Raises:
        InvalidField: anything else.
    """
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidField(path, f"{path} must be a date as YYYY-MM-DD")
