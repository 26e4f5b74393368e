"""Opaque, tamper-proof stream cursors and page tokens.

A token is url-safe base64 of a small JSON payload plus an HMAC over the payload and the
tenant id, so a token is useless to another tenant and cannot be forged or edited. It grants
nothing by itself: every call is still scoped to the caller's tenant.

A valid signature only proves the hub made the token; its contents are still read strictly
(types, ranges, timezones), so that a token from an older hub version, or one signed with a
leaked secret, fails as ``CURSOR_INVALID`` / ``PAGE_TOKEN_INVALID`` rather than deep inside
a query.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import orjson
from google.protobuf.message import Message

from server.errors import CursorInvalid, PageTokenInvalid

_MAC_BYTES = 12
# Sequence numbers are BIGINT columns.
_MAX_SEQUENCE = 2**63 - 1
T = TypeVar("T")
R = TypeVar("R")


class TokenError(ValueError):
    """The token is malformed, forged, or belongs to someone else."""


class TokenCodec:
    """Signs and verifies tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, kind: str, tenant_id: uuid.UUID, body: bytes) -> bytes:
        message = kind.encode() + b"|" + tenant_id.bytes + b"|" + body
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, kind: str, tenant_id: uuid.UUID, payload: dict[str, Any]) -> str:
        """Make a token of ``kind`` carrying ``payload`` for ``tenant_id``."""
        body = orjson.dumps(payload)
        raw = self._mac(kind, tenant_id, body) + body
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def decode(self, kind: str, tenant_id: uuid.UUID, token: str) -> dict[str, Any]:
        """Verify a token and return its payload; raises :class:`TokenError`."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError, binascii.Error) as exc:
            raise TokenError("malformed token") from exc
        mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(kind, tenant_id, body)):
            raise TokenError("invalid token")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise TokenError("malformed token") from exc
        if not isinstance(payload, dict):
            raise TokenError("malformed token")
        return payload


# --- strict readers of token contents ---------------------------------------------------------


def sequence(value: object) -> int:
    """A sequence number: an integer from 0 to the largest BIGINT."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SEQUENCE:
        raise TokenError("not a sequence number")
    return value


def aware_time(value: object) -> dt.datetime:
    """A timezone-aware ISO time, in UTC (one that has no UTC form is refused)."""
    if not isinstance(value, str):
        raise TokenError("not a time")
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise TokenError("a time without a timezone")
    return moment.astimezone(dt.UTC)  # OverflowError at the ends of the calendar


def uuid_value(value: object) -> uuid.UUID:
    """A UUID in its text form."""
    if not isinstance(value, str):
        raise TokenError("not a UUID")
    return uuid.UUID(value)


def short_text(value: object, limit: int = 64) -> str:
    """A string of at most ``limit`` characters."""
    if not isinstance(value, str) or len(value) > limit:
        raise TokenError("not a short text")
    return value


_BAD_CONTENT = (TokenError, KeyError, ValueError, TypeError, OverflowError)


class Cursors:
    """Resumable stream cursors of one kind: "after event N" for a tenant."""

    def __init__(self, codec: TokenCodec, kind: str) -> None:
        self._codec = codec
        self._kind = kind

    def encode(self, tenant_id: uuid.UUID, after: int) -> str:
        """The cursor positioned after sequence number ``after``."""
        return self._codec.encode(self._kind, tenant_id, {"s": after})

    def decode(self, tenant_id: uuid.UUID, cursor: str) -> int:
        """The sequence number a cursor is positioned after (0 for an empty cursor).

        Raises:
            CursorInvalid: malformed, forged, another tenant's, or odd contents.
        """
        if not cursor:
            return 0
        try:
            return sequence(self._codec.decode(self._kind, tenant_id, cursor)["s"])
        except _BAD_CONTENT:
            raise CursorInvalid(
                "cursor", "cursor is invalid or belongs to another tenant"
            ) from None


def filters_fingerprint(request: Message) -> str:
    """A digest of a List request without its paging fields: the filters a token was made for."""
    filters = type(request)()
    filters.CopyFrom(request)
    for name in ("page_token", "page_size"):
        filters.ClearField(name)
    return hashlib.sha256(filters.SerializeToString(deterministic=True)).hexdigest()[:16]


class PageTokens(Generic[T]):
    """Page tokens of one List RPC, bound to the tenant and to the request's filters.

    Args:
        codec: signs the tokens.
        kind: what the tokens page through (part of the signature).
        dump: the position after an item, as a JSON-able dict.
        load: the position read back from that dict; it may raise anything on odd contents.
    """

    def __init__(
        self,
        codec: TokenCodec,
        kind: str,
        dump: Callable[[T], dict[str, Any]],
        load: Callable[[Mapping[str, Any]], T],
    ) -> None:
        self._codec = codec
        self._kind = kind
        self._dump = dump
        self._load = load

    def position(self, tenant_id: uuid.UUID, request: Message) -> T | None:
        """Where the page asked for starts (None for the first page).

        Raises:
            PageTokenInvalid: malformed, forged, another tenant's, for other filters, or
                with odd contents.
        """
        token = getattr(request, "page_token", "")
        if not token:
            return None
        try:
            payload = self._codec.decode(self._kind, tenant_id, token)
            if payload.get("f") != filters_fingerprint(request):
                raise TokenError("filters changed")
            return self._load(payload)
        except _BAD_CONTENT:
            raise PageTokenInvalid(
                "page_token", "page_token is invalid or was made for other filters"
            ) from None

    def next_token(self, tenant_id: uuid.UUID, request: Message, last: T) -> str:
        """The token of the page after the one ending with ``last``."""
        payload = {"f": filters_fingerprint(request), **self._dump(last)}
        return self._codec.encode(self._kind, tenant_id, payload)

    def page(
        self,
        tenant_id: uuid.UUID,
        request: Message,
        rows: list[R],
        size: int,
        position_of: Callable[[R], T],
    ) -> tuple[list[R], str]:
        """Cut ``rows`` (read with a limit of ``size + 1``) to a page and its next token."""
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, self.next_token(tenant_id, request, position_of(rows[-1]))
