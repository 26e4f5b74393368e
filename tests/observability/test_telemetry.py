"""Telemetry set-up from the standard OTEL_* variables: exporters, protocol, sampling, resource."""

from __future__ import annotations

import re
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, TraceIdRatioBased
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from server.observability.sampling import (
    DEFAULT_RATIO,
    LinkFollowingSampler,
    root_sampler_from_env,
)
from server.observability.semconv import SCHEMA_URL
from server.observability.telemetry import build_telemetry, hub_resource
from server.processes import free_port

OTEL_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_nothing_is_exported_by_default() -> None:
    built = build_telemetry()
    assert (built.tracer_provider, built.meter_provider, built.logger_provider) == (
        None,
        None,
        None,
    )


def test_otlp_goes_over_http_by_default_and_over_grpc_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    built = build_telemetry()
    assert [type(e) for e in built.span_exporters] == [HttpSpanExporter]
    built.shutdown()

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    built = build_telemetry()
    assert [type(e) for e in built.span_exporters] == [GrpcSpanExporter]
    (reader,) = built.metric_readers
    assert isinstance(reader, PeriodicExportingMetricReader)
    assert isinstance(reader._exporter, GrpcMetricExporter)
    assert [type(e) for e in built.log_exporters] == [GrpcLogExporter]
    built.shutdown()

    # The per-signal variable wins over the general one.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    monkeypatch.delenv("OTEL_METRICS_EXPORTER")
    monkeypatch.delenv("OTEL_LOGS_EXPORTER")
    built = build_telemetry()
    assert [type(e) for e in built.span_exporters] == [HttpSpanExporter]
    built.shutdown()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_TRACES_SAMPLER", "my_entry_point"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
    ],
)
def test_unsupported_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    if variable == "OTEL_TRACES_SAMPLER_ARG":
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=re.escape(value)):
        build_telemetry()


def test_the_prometheus_endpoint_serves_the_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    built = build_telemetry()
    try:
        assert built.meter_provider is not None
        meter = built.meter_provider.get_meter("probe")
        meter.create_histogram("probe.duration", unit="s").record(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        built.shutdown()
    assert "probe_duration_seconds_bucket" in text
    assert 'service_name="fbrhub"' in text  # target_info carries the resource


def test_the_resource_names_the_service_its_version_and_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resource = hub_resource(instance_id="worker-7", environment="production")
    attributes = dict(resource.attributes)
    assert attributes["service.name"] == "fbrhub"
    assert attributes["service.instance.id"] == "worker-7"
    assert attributes["deployment.environment.name"] == "production"
    assert attributes["service.version"]
    assert resource.schema_url == SCHEMA_URL
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fbrhub-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=hub-0")
    attributes = dict(hub_resource().attributes)
    assert attributes["service.name"] == "fbrhub-eu"
    assert attributes["k8s.pod.name"] == "hub-0"
    assert attributes["service.instance.id"]  # a fresh one when none is given


def test_the_pinned_conventions_are_those_the_installed_package_generates() -> None:
    def version(schema: Schemas) -> tuple[int, ...]:
        return tuple(int(part) for part in schema.value.rsplit("/", 1)[1].split("."))

    assert max(Schemas, key=version).value == SCHEMA_URL


def test_the_root_sampler_follows_the_standard_variables() -> None:
    default = root_sampler_from_env({})
    assert isinstance(default, TraceIdRatioBased) and default.rate == DEFAULT_RATIO
    assert root_sampler_from_env({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) is ALWAYS_ON
    assert root_sampler_from_env({"OTEL_TRACES_SAMPLER": "always_off"}) is ALWAYS_OFF
    ratio = root_sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.25


def _context(sampled: bool) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=flags)


def test_a_linked_root_span_follows_its_link_and_a_child_its_parent() -> None:
    sampler = LinkFollowingSampler(ALWAYS_ON)
    for sampled in (True, False):
        expected = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
        linked = sampler.should_sample(None, 1, "attempt", links=[Link(_context(sampled))])
        assert linked.decision is expected
        parent = set_span_in_context(NonRecordingSpan(_context(sampled)))
        child = sampler.should_sample(parent, 1, "child", links=[Link(_context(not sampled))])
        assert child.decision is expected  # the parent wins over a link
    assert sampler.should_sample(None, 1, "root").decision is Decision.RECORD_AND_SAMPLE
    never = LinkFollowingSampler(ALWAYS_OFF)
    assert never.should_sample(None, 1, "root").decision is Decision.DROP
    assert never.should_sample(None, 1, "a", links=[Link(_context(True))]).decision is (
        Decision.RECORD_AND_SAMPLE
    )


def test_a_tracer_provider_is_built_with_the_hubs_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    built = build_telemetry()
    assert isinstance(built.tracer_provider, TracerProvider)
    assert (
        "LinkFollowingSampler{root=AlwaysOffSampler}"
        in built.tracer_provider.sampler.get_description()
    )
    built.shutdown()
