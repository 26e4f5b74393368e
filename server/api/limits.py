"""Request limits shared by the servicers: string lengths, list sizes and page sizes."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message

from server.errors import FieldTooLong, InvalidField


def check_lengths(request: Message, **limits: int) -> None:
    """INVALID_ARGUMENT naming the first string field longer than its limit (in characters)."""
    for name, limit in limits.items():
        value = getattr(request, name)
        if len(value) > limit:
            raise FieldTooLong(name, f"{name} must be at most {limit} characters")


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The page size to use: 0 means the default, above the maximum is the maximum."""
    if requested < 0:
        raise InvalidField("page_size", "page_size must not be negative")
    return min(requested or default, maximum)


MAX_FILTER_VALUES = 100
"""Values one repeated filter may list (a query binds one parameter per value)."""


def check_list(values: Sequence[object], path: str, *, maximum: int = MAX_FILTER_VALUES) -> None:
    """INVALID_ARGUMENT if a repeated field lists more than ``maximum`` values."""
    if len(values) > maximum:
        raise InvalidField(path, f"{path} may list at most {maximum} values")
