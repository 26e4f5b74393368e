"""Credentials never reach a log, whichever library writes the line.

grpc logs a metadata value that is not UTF-8 in full (``Invalid encoding on b'Bearer
fbrhub_…'``, logger ``grpc._cython.cygrpc``), and any exception message may quote a header.
:class:`CredentialFilter` rewrites every record it sees: API keys (``fbrhub_<id>_<secret>``
keeps its public id), bearer tokens and the bytes of grpc's encoding complaint are replaced
before the record is formatted, tracebacks included.
"""

from __future__ import annotations

import logging
import re

# fbrhub_<key id>_<secret>: the key id is public (it names the key in the audit trail).
_API_KEY = re.compile(r"(fbrhub_[0-9A-Za-z]{1,32}_)[0-9A-Za-z_\-]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
_ENCODING_COMPLAINT = "Invalid encoding on"
REDACTED = "[REDACTED]"
# Loggers that may write a credential themselves: a filter on a logger sees only its own
# records, so these get one besides the handlers.
_CREDENTIAL_LOGGERS = ("grpc", "grpc._cython.cygrpc", "grpc._server", "grpc.aio")


def redact(text: str) -> str:
    """``text`` with API key secrets and bearer tokens replaced."""
    if "fbrhub_" not in text and "earer" not in text.lower():
        return text
    return _BEARER.sub(rf"\g<1>{REDACTED}", _API_KEY.sub(rf"\g<1>{REDACTED}", text))


class CredentialFilter(logging.Filter):
    """Rewrites a record's message and traceback with credentials redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_ENCODING_COMPLAINT):
            # The argument is a raw metadata value: say only how long it was.
            value = record.args[0] if isinstance(record.args, tuple) and record.args else b""
            size = len(value) if isinstance(value, bytes | str) else 0
            record.msg, record.args = f"{_ENCODING_COMPLAINT} a metadata value ({size} bytes)", ()
            record.exc_info, record.exc_text = None, None
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's own error path
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = CredentialFilter()


def install_credential_filter(*handlers: logging.Handler) -> None:
    """Add the filter to the credential-writing loggers and to ``handlers`` (idempotent)."""
    for target in (*(logging.getLogger(name) for name in _CREDENTIAL_LOGGERS), *handlers):
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
