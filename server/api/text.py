"""Text the databases can hold: every request field is checked at the edge.

PostgreSQL cannot store a NUL (U+0000) in a text column, nor read one back out of a JSON
value (``payload->>'buyer_name'`` fails on ``\\u0000``), and an invalid UTF-8 text becomes a
NUL when decoded (:mod:`server.api.decoding`). So a NUL in any field of any request is
refused with ``INVALID_ARGUMENT`` naming each field, before any servicer code runs. The
invoices of a batch are the one exception: each is judged on its own by the validator, so
that one bad invoice is refused without its valid neighbours.

The check is one C-level substring search per text (``"\\0" in value``), over the fields a
request actually sets.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from clients.fbr.rules import Violation
from server.errors import TextNotStorable

UNSTORABLE = "\x00"
TEXT_MESSAGE = "must be valid UTF-8 text without NUL characters"
# Request fields judged elsewhere: the invoices of a batch, each by the validator.
JUDGED_PER_INVOICE = frozenset({"invoices"})


def refuse_unstorable_text(request: Message) -> None:
    """Raise :class:`TextNotStorable` naming every field of ``request`` holding a NUL.

    The ``invoices`` of a batch request are left to the validator (one invoice at a time).
    """
    paths = list(_unstorable_paths(request, "", skip=JUDGED_PER_INVOICE))
    if paths:
        raise TextNotStorable(
            tuple(Violation(path, "", f"{path} {TEXT_MESSAGE}") for path in paths)
        )


def unstorable_paths(message: Message) -> list[str]:
    """Every field path of ``message`` (nothing skipped) whose text holds a NUL."""
    return list(_unstorable_paths(message, "", skip=frozenset()))


def _unstorable_paths(message: Message, prefix: str, *, skip: frozenset[str]) -> Iterator[str]:
    for field, value in message.ListFields():
        if field.name in skip:
            continue
        path = prefix + field.name
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            if repeated:
                for index, item in enumerate(value):
                    if UNSTORABLE in item:
                        yield f"{path}[{index}]"
            elif UNSTORABLE in value:
                yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_map(field):
                for key, item in value.items():
                    if isinstance(key, str) and UNSTORABLE in key:
                        yield f"{path}[key]"
                    if isinstance(item, str) and UNSTORABLE in item:
                        yield f"{path}[value]"
                    elif isinstance(item, Message):
                        yield from _unstorable_paths(item, f"{path}[value].", skip=frozenset())
            elif repeated:
                for index, item in enumerate(value):
                    yield from _unstorable_paths(item, f"{path}[{index}].", skip=frozenset())
            else:
                yield from _unstorable_paths(value, f"{path}.", skip=frozenset())


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)
