"""Secrets at rest: the FBR tokens of tenants are stored encrypted.

Keys come from ``FBRHUB_FBR_TOKEN_KEYS`` (comma-separated Fernet keys, newest first). Values
are encrypted with the first key and decrypted with any of them (``MultiFernet``), so a key
is rotated by putting a new key first, running ``fbrhub secrets rotate`` (re-encrypts every
token with the new key), then removing the old key. Stored values carry a prefix, so rows
written before encryption was introduced are still read (and rewritten by ``rotate``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import String, TypeDecorator
from sqlalchemy.engine import Dialect

from server.settings import Settings, get_settings

PREFIX = "fernet:"

_cipher: MultiFernet | None = None


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with any configured key."""


def parse_keys(text: str) -> list[str]:
    """Split the comma-separated key list; raises ValueError on a malformed key."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise ValueError("at least one FBR token key is required")
    for key in keys:
        Fernet(key)  # raises ValueError when the key is not 32 url-safe base64 bytes
    return keys


def configure_token_keys(keys: Sequence[str]) -> None:
    """Set the process's keys (newest first)."""
    global _cipher
    _cipher = MultiFernet([Fernet(k) for k in keys])


def configure_secrets(settings: Settings) -> None:
    """Install the keys of ``FBRHUB_FBR_TOKEN_KEYS`` (call once at start-up)."""
    configure_token_keys(parse_keys(settings.fbr_token_keys.get_secret_value()))


def token_cipher() -> MultiFernet:
    """The process's cipher; from the settings unless :func:`configure_token_keys` ran."""
    if _cipher is None:
        configure_token_keys(parse_keys(get_settings().fbr_token_keys.get_secret_value()))
    assert _cipher is not None
    return _cipher


def encrypt_secret(plain: str) -> str:
    """Encrypt a secret for storage."""
    return PREFIX + token_cipher().encrypt(plain.encode()).decode()


def decrypt_secret(stored: str) -> str:
    """Decrypt a stored secret (a value without the prefix predates encryption)."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return token_cipher().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError("stored secret does not decrypt with any key") from None


def rotate_secret(stored: str) -> str:
    """Re-encrypt a stored secret with the newest key (encrypts a legacy plain value)."""
    if not stored.startswith(PREFIX):
        return encrypt_secret(stored)
    return PREFIX + token_cipher().rotate(stored[len(PREFIX) :].encode()).decode()


class EncryptedString(TypeDecorator[str]):
    """A string column stored encrypted; Python code only ever sees the plain value."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:  # noqa: ARG002
        return None if value is None else encrypt_secret(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:  # noqa: ARG002
        return None if value is None else decrypt_secret(value)
