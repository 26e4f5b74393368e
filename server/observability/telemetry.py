"""OpenTelemetry set-up for the hub process: resource, traces, metrics and logs exporters.

Everything is chosen with the standard variables, and nothing is exported by default:

- ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``, ``OTEL_LOGS_EXPORTER``: a
  comma-separated list of ``otlp``, ``console`` (and, for metrics, ``prometheus``), or
  ``none`` (the default).
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or the per-signal ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``):
  ``http/protobuf`` (the default) or ``grpc``; the exporters read the other
  ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, TLS, timeout) themselves.
- ``OTEL_EXPORTER_PROMETHEUS_HOST`` / ``_PORT`` (default ``localhost:9464``): where the
  scrape endpoint listens.
- ``OTEL_TRACES_SAMPLER`` / ``_ARG``: see :mod:`server.observability.sampling`.
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override the resource below.

The resource names the service (``fbrhub``), its version, and this process
(``service.instance.id``): several hub processes report the same metrics, told apart by it.
Spans, metrics and logs carry ids, codes and counts only, never personal data.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.semconv.attributes.service_attributes import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
)

from server.observability.logs import inject_trace_context
from server.observability.sampling import LinkFollowingSampler, root_sampler_from_env
from server.observability.semconv import SCHEMA_URL

__all__ = [
    "Telemetry",
    "build_telemetry",
    "configure_telemetry",
    "hub_resource",
    "otlp_protocol",
]

_PROTOCOLS = ("http/protobuf", "grpc")
_DEPLOYMENT_ENVIRONMENT = "deployment.environment.name"


@dataclass
class Telemetry:
    """Providers built from the ``OTEL_*`` variables (:func:`build_telemetry`).

    Attributes:
        resource: the process's resource.
        span_exporters: what spans go to (none: no tracer provider).
        metric_readers: what reads the metrics (none: no meter provider).
        log_exporters: where log records go (none: logs stay on stderr only).
    """

    resource: Resource
    span_exporters: list[SpanExporter] = field(default_factory=list)
    metric_readers: list[MetricReader] = field(default_factory=list)
    log_exporters: list[LogRecordExporter] = field(default_factory=list)
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    handlers: list[logging.Handler] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)

    def install(self) -> None:
        """Make these the process's global providers and export logs (once per process)."""
        if self.tracer_provider is not None:
            trace.set_tracer_provider(self.tracer_provider)
        if self.meter_provider is not None:
            metrics.set_meter_provider(self.meter_provider)
        if self.logger_provider is not None:
            from opentelemetry.instrumentation.logging.handler import LoggingHandler

            set_logger_provider(self.logger_provider)
            inject_trace_context()
            handler = LoggingHandler(logger_provider=self.logger_provider)
            logging.getLogger().addHandler(handler)
            self.handlers.append(handler)

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporters (at process exit)."""
        for handler in self.handlers:
            logging.getLogger().removeHandler(handler)
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None:
                provider.shutdown()
        for server in self.servers:
            server.shutdown()
            server.server_close()


def hub_version() -> str:
    """The installed fbrhub version (``service.version``)."""
    try:
        return version("fbrhub")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def hub_resource(*, instance_id: str | None = None, environment: str | None = None) -> Resource:
    """The resource of this process; ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` win."""
    attributes: dict[str, Any] = {
        SERVICE_NAME: "fbrhub",
        SERVICE_VERSION: hub_version(),
        SERVICE_INSTANCE_ID: instance_id or str(uuid.uuid4()),
    }
    if environment:
        attributes[_DEPLOYMENT_ENVIRONMENT] = environment
    return Resource.create(attributes, SCHEMA_URL).merge(OTELResourceDetector().detect())


def _exporter_names(variable: str) -> list[str]:
    names = [n.strip().lower() for n in os.environ.get(variable, "none").split(",")]
    return [n for n in names if n and n != "none"]


def otlp_protocol(signal: str) -> str:
    """The OTLP protocol for ``signal`` (``TRACES``, ``METRICS``, ``LOGS``).

    Raises:
        ValueError: a protocol other than ``http/protobuf`` or ``grpc``.
    """
    value = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in _PROTOCOLS:
        raise ValueError(f"unsupported OTLP protocol {value!r}: use one of {', '.join(_PROTOCOLS)}")
    return value


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"unsupported OTEL_TRACES_EXPORTER {name!r}")
    if otlp_protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


def _metric_reader(name: str, servers: list[Any]) -> MetricReader:
    if name == "prometheus":
        return _prometheus_reader(servers)
    exporter: MetricExporter
    if name == "console":
        exporter = ConsoleMetricExporter()
    elif name != "otlp":
        raise ValueError(f"unsupported OTEL_METRICS_EXPORTER {name!r}")
    elif otlp_protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        exporter = HttpMetricExporter()
    # The interval is the standard OTEL_METRIC_EXPORT_INTERVAL (milliseconds).
    return PeriodicExportingMetricReader(exporter)


def _prometheus_reader(servers: list[Any]) -> MetricReader:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
    port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
    server, _thread = start_http_server(port=port, addr=host)
    servers.append(server)
    return PrometheusMetricReader()


def _log_exporter(name: str) -> LogRecordExporter:
    if name == "console":
        return ConsoleLogRecordExporter()
    if name != "otlp":
        raise ValueError(f"unsupported OTEL_LOGS_EXPORTER {name!r}")
    if otlp_protocol("LOGS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
            OTLPLogExporter,
        )
    return OTLPLogExporter()


def build_telemetry(*, instance_id: str | None = None, environment: str | None = None) -> Telemetry:
    """Build the providers the ``OTEL_*`` variables ask for, without installing them.

    Args:
        instance_id: ``service.instance.id`` (the forwarder's worker id when set).
        environment: ``deployment.environment.name`` (``development`` or ``production``).

    Raises:
        ValueError: an exporter, protocol or sampler the hub does not support.
    """
    built = Telemetry(hub_resource(instance_id=instance_id, environment=environment))
    built.span_exporters = [_span_exporter(n) for n in _exporter_names("OTEL_TRACES_EXPORTER")]
    if built.span_exporters:
        built.tracer_provider = TracerProvider(
            resource=built.resource, sampler=LinkFollowingSampler(root_sampler_from_env())
        )
        for exporter in built.span_exporters:
            built.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    built.metric_readers = [
        _metric_reader(n, built.servers) for n in _exporter_names("OTEL_METRICS_EXPORTER")
    ]
    if built.metric_readers:
        built.meter_provider = MeterProvider(
            resource=built.resource, metric_readers=built.metric_readers
        )
    built.log_exporters = [_log_exporter(n) for n in _exporter_names("OTEL_LOGS_EXPORTER")]
    if built.log_exporters:
        built.logger_provider = LoggerProvider(resource=built.resource)
        for log_exporter in built.log_exporters:
            built.logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    return built


def configure_telemetry(
    *, instance_id: str | None = None, environment: str | None = None
) -> Telemetry:
    """Build the providers the ``OTEL_*`` variables ask for and install them (see above)."""
    telemetry = build_telemetry(instance_id=instance_id, environment=environment)
    telemetry.install()
    return telemetry
