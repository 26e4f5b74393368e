"""Logging: human text for development, JSON lines in production, both with trace context.

Every record gets the ids of the span active where it was *created* (the OpenTelemetry
logging instrumentation's record factory), so a line logged inside an RPC or a delivery
attempt carries that trace's ``trace_id`` and ``span_id`` whichever handler formats it.

A JSON line holds ``time`` (UTC, milliseconds), ``level``, ``logger``, ``message``,
``trace_id``, ``span_id`` and ``trace_sampled`` when there is a trace, the id fields of
:data:`LOG_FIELDS` a call passed with ``extra=``, and ``exception`` (type and traceback).
Only those fields are written: whatever else a library attaches to a record stays out, so a
field can never carry personal data that no one chose to log.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any, Final

import orjson
from opentelemetry.instrumentation.logging import LoggingInstrumentor

from server.observability.redaction import install_credential_filter

# Ids and codes a log call may attach with ``extra=`` (docs/observability.md lists them).
LOG_FIELDS: Final = (
    "tenant_id",
    "invoice_id",
    "attempt",
    "endpoint",
    "outcome",
    "http_status",
    "fbr_error_code",
    "rpc_method",
    "count",
)
_NO_TRACE = "0"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "otelTraceID", _NO_TRACE)
        if trace_id != _NO_TRACE:
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "otelSpanID", _NO_TRACE)
            entry["trace_sampled"] = bool(getattr(record, "otelTraceSampled", False))
        for name in LOG_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = {
                "type": record.exc_info[0].__name__,
                "stacktrace": self.formatException(record.exc_info),
            }
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """Development lines: time, level, logger, message, then the trace and id fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """The record as text, ids appended as ``key=value``."""
        line = super().format(record)
        fields = [
            f"{name}={record.__dict__[name]}" for name in LOG_FIELDS if name in record.__dict__
        ]
        trace_id = getattr(record, "otelTraceID", _NO_TRACE)
        if trace_id != _NO_TRACE:
            fields.append(f"trace_id={trace_id}")
        if not fields:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} [{' '.join(fields)}]{newline}{rest}"


def inject_trace_context() -> None:
    """Put the current span's ids on every log record from now on (once per process)."""
    instrumentor = LoggingInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        # The OTLP handler is installed by telemetry set-up when OTEL_LOGS_EXPORTER asks.
        instrumentor.instrument(inject_trace_context=True, enable_log_auto_instrumentation=False)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure root logging to stderr: ``text`` for development, ``json`` in production."""
    inject_trace_context()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    install_credential_filter(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One INFO line per FBR request would drown the log (and names URLs, not outcomes).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # aiosqlite logs every statement at DEBUG, from its own thread (outside any trace).
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
