"""Request decoding that turns invalid UTF-8 into a field error instead of ``UNKNOWN``.

gRPC decodes a request before any servicer or interceptor code runs; protobuf refuses a
``string`` field holding invalid UTF-8 with ``DecodeError``, and grpc answers that with
``UNKNOWN "Unexpected <class 'DecodeError'>"``. The handlers' deserializers are wrapped here:
when the normal decode fails, the request is decoded again with a *twin* of its message type
in which every ``string`` field is ``bytes``, each invalid text is replaced by
:data:`INVALID_TEXT`, and the result is decoded with the real type. :data:`INVALID_TEXT`
holds a NUL, which no field may hold (PostgreSQL cannot store it), so the field is refused
with its path like any other unstorable text (:mod:`server.api.text`), and in a batch only
its own invoice is refused. A request that is not protobuf at all decodes to
:data:`UNDECODABLE`, which the interceptor answers with ``INVALID_ARGUMENT``.

The normal decode stays the fast path: the twin is built, once per message type, only when
a request first needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

INVALID_TEXT = "\x00"
"""What an invalid UTF-8 text becomes: a NUL, refused at its field like any NUL."""


class Undecodable:
    """A request that is not a protobuf message of its type (the sentinel :data:`UNDECODABLE`)."""


UNDECODABLE = Undecodable()
Deserializer = Callable[[bytes], Any]


def lenient(deserializer: Deserializer | None) -> Deserializer | None:
    """Wrap a handler's request deserializer so that it never raises on client bytes."""
    message_class = getattr(deserializer, "__self__", None)
    if deserializer is None or not isinstance(message_class, type):
        return deserializer
    if not issubclass(message_class, Message):
        return deserializer
    real: type[Message] = message_class

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _decode_with_invalid_text(real, data)

    return deserialize


def _decode_with_invalid_text(message_class: type[Message], data: bytes) -> Any:
    """Decode ``data`` with every invalid UTF-8 text replaced by :data:`INVALID_TEXT`."""
    try:
        twin = bytes_twin(message_class.DESCRIPTOR.full_name)()
        twin.ParseFromString(data)
        _mark_invalid_text(twin)
        return message_class.FromString(twin.SerializeToString())
    except (DecodeError, KeyError, TypeError, ValueError):
        return UNDECODABLE


def _mark_invalid_text(message: Message) -> None:
    """Replace, in place, every ``bytes`` value that was text and is not UTF-8."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_map(field):
                raise ValueError("maps are not decoded leniently")
            for item in value if _repeated(field) else (value,):
                _mark_invalid_text(item)
        elif field.type == FieldDescriptor.TYPE_BYTES and field.name in _text_fields(
            message.DESCRIPTOR.full_name
        ):
            if _repeated(field):
                for index, item in enumerate(value):
                    if not _is_utf8(item):
                        value[index] = INVALID_TEXT.encode()
            elif not _is_utf8(value):
                setattr(message, field.name, INVALID_TEXT.encode())


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_TWINS = descriptor_pool.DescriptorPool()
_TEXT_FIELDS: dict[str, frozenset[str]] = {}


@functools.cache
def bytes_twin(full_name: str) -> type[Message]:
    """The twin of a message type: the same fields, ``bytes`` where the real one has text.

    Its serialised form is that of the real type; tests use it to write requests holding
    any bytes where text belongs.
    """
    real = descriptor_pool.Default().FindMessageTypeByName(full_name)
    _add_file(real.file)
    return message_factory.GetMessageClass(_TWINS.FindMessageTypeByName(full_name))


def _text_fields(full_name: str) -> frozenset[str]:
    return _TEXT_FIELDS.get(full_name, frozenset())


def _add_file(file: Any) -> None:
    """Add a file (dependencies first) to the twin pool with its strings made bytes."""
    try:
        _TWINS.FindFileByName(file.name)
        return
    except KeyError:
        pass
    for dependency in file.dependencies:
        _add_file(dependency)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    prefix = f"{proto.package}." if proto.package else ""
    for message in proto.message_type:
        _bytes_for_text(message, prefix)
    _TWINS.Add(proto)


def _bytes_for_text(message: descriptor_pb2.DescriptorProto, prefix: str) -> None:
    full_name = prefix + message.name
    text = set()
    if message.options.map_entry:
        return  # map keys cannot be bytes: a map with invalid text stays undecodable
    for field in message.field:
        if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            text.add(field.name)
    _TEXT_FIELDS[full_name] = frozenset(text)
    for nested in message.nested_type:
        _bytes_for_text(nested, full_name + ".")


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)
