"""OpenTelemetry and logging set-up for the hub process.

The span and metric exporters are chosen by the standard ``OTEL_TRACES_EXPORTER`` and
``OTEL_METRICS_EXPORTER`` variables (``otlp``, ``console`` or ``none``; default ``none``) and
the OTLP exporters read the standard ``OTEL_EXPORTER_OTLP_*`` variables themselves. Spans
and metrics carry ids, codes and counts only; personal data (NTN/CNIC, names, addresses,
phones, e-mails) never goes into attributes or labels.
"""

from __future__ import annotations

import logging
import os
import sys

import orjson
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

_configured = False


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def configure_tracing(service_name: str = "fbrhub") -> TracerProvider | None:
    """Install a tracer provider if ``OTEL_TRACES_EXPORTER`` asks for one (once per process)."""
    global _configured
    if _configured:
        return None
    _configured = True
    exporter = _exporter(os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower())
    if exporter is None:
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def configure_metrics() -> MeterProvider | None:
    """Install a meter provider if ``OTEL_METRICS_EXPORTER`` asks for one (``otlp``/``console``).

    The export interval is the standard ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds).
    """
    name = os.environ.get("OTEL_METRICS_EXPORTER", "none").strip().lower()
    exporter: MetricExporter
    if name == "console":
        exporter = ConsoleMetricExporter()
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter()
    else:
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "fbrhub")})
    provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter)]
    )
    metrics.set_meter_provider(provider)
    return provider


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure root logging: human text for development, JSON lines in production."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One INFO line per FBR request would drown the log (and names URLs, not outcomes).
    logging.getLogger("httpx").setLevel(logging.WARNING)
