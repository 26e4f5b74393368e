"""Hypothesis strategies for hub requests, built from the proto descriptors.

Every request is generated as its *bytes twin* (``server.api.decoding.bytes_twin``: the same
message with every text field as bytes), so a text field can hold anything a hostile client
can put on the wire: valid UTF-8 of any kind, NUL, or bytes that are not UTF-8 at all. The
twin's serialised form is exactly what a real client would send.

Values lean towards the ones that broke the hub before: NUL, invalid UTF-8, huge and tiny
numbers, timestamps out of range, unknown enum values, long lists, odd dates and ids.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from server.api.decoding import bytes_twin

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "%",
    "_%\\",
    "\\",
    "'; DROP TABLE invoices; --",
    "\U0001f600" * 300,
    "x" * 5000,
    " ",
    "\u202e\u0000\ufeff",
    "null",
    "2024-02-30",
    "0000-00-00",
    "9999-12-31",
    "10000-01-01",
    "1970-01-01T00:00:00",
    "SN001",
    "SN999",
    "8885801",
    "3740512345671",
    "12345678901",
    "fbrhub_0000_x",
    "AAAA",
    "eyJzIjo5fQ",
    "-1",
    "9e999999",
    "1e1000000",
    "1E+39",
    "9" * 40,
    "NaN",
    "Infinity",
    "0.000000001",
]
HOSTILE_BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"ok\xfe\xfe", b"\xf4\x90\x80\x80"]
MAX_DEPTH = 3


def _text() -> st.SearchStrategy[bytes]:
    plausible = st.one_of(
        st.uuids().map(str),
        st.dates().map(dt.date.isoformat),
        st.from_regex(r"[0-9]{1,15}(\.[0-9]{1,6})?", fullmatch=True),
        st.text(max_size=40),
        st.text(min_size=20, max_size=320),  # around the columns' limits
    )
    text = st.one_of(st.sampled_from(HOSTILE_TEXT), plausible)
    invalid = st.one_of(
        st.sampled_from(HOSTILE_BYTES),
        st.builds(lambda a, b: a + b, st.sampled_from(HOSTILE_BYTES), st.binary(max_size=20)),
    )
    return st.one_of(text.map(str.encode), invalid)


TEXT = _text()
INTS = {
    FieldDescriptor.TYPE_INT32: st.one_of(st.integers(*INT32), st.sampled_from([0, -1, *INT32])),
    FieldDescriptor.TYPE_INT64: st.one_of(st.integers(*INT64), st.sampled_from([0, -1, *INT64])),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return TEXT if field.type == FieldDescriptor.TYPE_STRING else st.binary(max_size=30)
    if field.type in INTS:
        return INTS[field.type]
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(*INT32))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    raise NotImplementedError(field.full_name)


Known = Mapping[str, Sequence[str]]
"""Field name -> values that exist in the hub (ids, references), so requests reach past
"not found" into the code that writes."""


def _values(field: FieldDescriptor, depth: int, known: Known) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1, known)
    if field.type == FieldDescriptor.TYPE_STRING and known.get(field.name):
        existing = st.sampled_from(list(known[field.name])).map(str.encode)
        return st.one_of(existing, existing, existing, TEXT)  # mostly what exists
    return _scalar(field)


def _repeated(field: FieldDescriptor, depth: int, known: Known) -> st.SearchStrategy[list[Any]]:
    element = _values(field, depth, known)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return st.lists(element, max_size=3)
    # Sometimes more values than one SQL statement may bind (PostgreSQL: 65,535).
    flood = st.builds(lambda value: [value] * 70_000, element)
    return st.one_of(st.lists(element, max_size=4), flood)


def _timestamp(twin: type[Message]) -> st.SearchStrategy[Message]:
    seconds = st.one_of(
        st.integers(*INT64),
        st.sampled_from([0, -1, -62_135_596_801, 253_402_300_800, 10**12, -(10**12)]),
        st.integers(-62_135_596_800, 253_402_300_799),
    )
    nanos = st.one_of(st.integers(*INT32), st.sampled_from([-1, 0, 10**9, 999_999_999]))
    return st.builds(lambda s, n: twin(seconds=s, nanos=n), seconds, nanos)


def messages(
    descriptor: Descriptor, depth: int = 0, known: Known | None = None
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s bytes twin, every field optional, hostile values first.

    Args:
        known: values that exist in the hub, by field name, drawn besides hostile ones.
    """
    known = known or {}
    twin = bytes_twin(descriptor.full_name)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamp(twin)
    if depth > MAX_DEPTH:
        return st.just(twin())
    fields = {}
    for field in descriptor.fields:
        values = (
            _repeated(field, depth, known) if field.is_repeated else _values(field, depth, known)
        )
        fields[field.name] = st.one_of(st.none(), values)
    return st.fixed_dictionaries(fields).map(lambda chosen: _build(twin, chosen))


def _build(twin: type[Message], chosen: dict[str, Any]) -> Message:
    message = twin()
    for name, value in chosen.items():
        if value is None:
            continue
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            getattr(message, name).extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# --- invoices: valid ones, and valid ones made hostile ---------------------------------------

HEADER_TEXT = (
    "invoice_date",
    "buyer_ntn_cnic",
    "buyer_business_name",
    "buyer_province",
    "buyer_address",
    "invoice_ref_no",
    "scenario_id",
    "erp_reference",
)
ITEM_TEXT = (
    "hs_code",
    "product_description",
    "rate",
    "uom",
    "quantity",
    "total_values",
    "value_sales_excluding_st",
    "sales_tax_applicable",
    "discount",
    "sale_type",
)
HOSTILE_NUMBERS = [b"9e999999", b"1e1000000", b"1E+39", b"9" * 40, b"-1", b"NaN", b"1e-999999"]


def twin_of(message: Message) -> Message:
    """A real message as its bytes twin (same wire form)."""
    twin = bytes_twin(message.DESCRIPTOR.full_name)()
    twin.ParseFromString(message.SerializeToString())
    return twin


@st.composite
def hostile_invoice(draw: st.DrawFn, valid: Message) -> Message:
    """``valid`` (a real Invoice) with one to three fields made hostile, as a twin."""
    twin = twin_of(valid)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()) or not twin.items:
            name = draw(st.sampled_from(HEADER_TEXT))
            setattr(twin, name, draw(TEXT))
        else:
            item = twin.items[draw(st.integers(0, len(twin.items) - 1))]
            name = draw(st.sampled_from(ITEM_TEXT))
            hostile = st.one_of(TEXT, st.sampled_from(HOSTILE_NUMBERS))
            setattr(item, name, draw(hostile))
    if draw(st.integers(0, 9)) == 0:  # now and then, far too many lines
        twin.items.extend([twin.items[0]] * 1500)
    return twin


def unique_reference() -> str:
    """An ERP reference no other example uses."""
    return f"GEN-{uuid.uuid4().hex[:16]}"


# --- plausible requests with one or two fields made hostile ------------------------------------

PLAUSIBLE_TEXT = {
    "request_id": "9b2f6c4e-1d3a-4f5b-8c7d-0e1f2a3b4c5d",
    "email": "someone@example.pk",
    "password": "a long enough password",
    "username": "some.user",
    "full_name": "Some Person",
    "phone": "+92 300 1234567",
    "name": "a key",
    "fbr_token": "sandbox-token-8885801",
    "value": "Corrected Value",
    "source": "web form",
    "reason": "asked by the subject",
    "note": "checked with FBR",
    "fbr_invoice_number": "8885801DI1234567890123",
    "fbr_dated": "2025-01-01 10:00:00",
    "invoice_date_from": "2025-01-01",
    "invoice_date_to": "2025-12-31",
    "outcome": "OK",
    "resource_prefix": "invoices/",
    "actions": "invoice.queued",
}


Pick = Callable[[Sequence[str]], str]


def _first(values: Sequence[str]) -> str:
    return values[0]


def _plausible_scalar(field: FieldDescriptor, known: Known, pick: Pick) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        if known.get(field.name):
            return pick(known[field.name]).encode()
        return PLAUSIBLE_TEXT.get(field.name, "text").encode()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return next((v.number for v in field.enum_type.values if v.number), 0)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"bytes"
    return 10 if field.name == "page_size" else 1


def plausible(descriptor: Descriptor, known: Known, depth: int = 0, pick: Pick = _first) -> Message:
    """A twin message with every field set to a plausible value (the first of each oneof).

    Args:
        pick: chooses among the known values of a field (default: the first).
    """
    twin = bytes_twin(descriptor.full_name)()
    if descriptor.full_name == "google.protobuf.Timestamp":
        return bytes_twin(descriptor.full_name)(seconds=1_750_000_000)
    for field in descriptor.fields:
        if field.containing_oneof is not None and field.containing_oneof.fields[0] is not field:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= MAX_DEPTH or _is_map(field):
                continue
            value = plausible(field.message_type, known, depth + 1, pick)
            if field.is_repeated:
                getattr(twin, field.name).append(value)
            else:
                getattr(twin, field.name).CopyFrom(value)
        elif field.is_repeated:
            getattr(twin, field.name).append(_plausible_scalar(field, known, pick))
        else:
            setattr(twin, field.name, _plausible_scalar(field, known, pick))
    return twin


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def _leaves(descriptor: Descriptor, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths to every non-message field, through singular and repeated (first) messages."""
    found: list[tuple[str, ...]] = []
    for field in descriptor.fields:
        path = (*prefix, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if len(prefix) < 2 and not _is_map(field):
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    found.append(path)
                else:
                    found.extend(_leaves(field.message_type, path))
        else:
            found.append(path)
    return found


@st.composite
def mutated(draw: st.DrawFn, descriptor: Descriptor, known: Known) -> Message:
    """A plausible request with one or two fields given hostile values."""
    message = plausible(descriptor, known, pick=lambda values: draw(st.sampled_from(values)))
    if "request_id" in descriptor.fields_by_name:  # a reused id is refused before any work
        message.request_id = str(draw(st.uuids())).encode()  # type: ignore[attr-defined]
    leaves = _leaves(descriptor)
    if not leaves:
        return message
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(leaves))
        _set(draw, message, descriptor, path)
    return message


def _set(draw: st.DrawFn, message: Message, descriptor: Descriptor, path: tuple[str, ...]) -> None:
    field = descriptor.fields_by_name[path[0]]
    if len(path) > 1 or field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp" and len(path) == 1:
            container = getattr(message, field.name)
            stamp = draw(_timestamp(bytes_twin(field.message_type.full_name)))
            if field.is_repeated:
                del container[:]
                container.append(stamp)
            else:
                container.CopyFrom(stamp)
            return
        child = getattr(message, field.name)
        if field.is_repeated:
            if not child:
                child.add()
            child = child[0]
        _set(draw, child, field.message_type, path[1:])
        return
    if field.is_repeated:
        values = draw(_repeated(field, MAX_DEPTH, {}))
        del getattr(message, field.name)[:]
        getattr(message, field.name).extend(values)
    elif field.type == FieldDescriptor.TYPE_STRING:
        setattr(message, field.name, draw(st.one_of(AROUND_COLUMNS, TEXT)))
    else:
        setattr(message, field.name, draw(_scalar(field)))


# Texts just past the lengths of the hub's columns (in characters; two bytes each in UTF-8).
AROUND_COLUMNS = st.sampled_from(
    [9, 14, 17, 21, 33, 41, 65, 73, 101, 201, 255, 301, 513, 1025]
).map(lambda n: ("\u00e9" * n).encode())
