"""Opaque, tamper-proof tokens for stream cursors and page tokens.

A token is url-safe base64 of a small JSON payload plus an HMAC over the payload and the
tenant id, so a token is useless to another tenant and cannot be forged or edited. It grants
nothing by itself: every call is still scoped to the caller's tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import orjson

_MAC_BYTES = 12


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
        except (ValueError, TypeError) as exc:
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
