"""The channel to the hub and the metadata of each call: API key, caller's, trace context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

Metadata = Sequence[tuple[str, str]]
"""Call metadata: ``(key, value)`` pairs; keys lower-case ASCII."""

USER_AGENT = "fbrhub-sdk-python"
_RESERVED_KEYS = frozenset({"authorization", "traceparent", "tracestate"})


@dataclass(frozen=True)
class ChannelConfig:
    """How to reach the hub: address, credentials, interceptors, channel options.

    Attributes:
        address: ``host:port`` of the hub.
        tls: use TLS (implied by any of the three certificate arguments).
        root_certificates: PEM of the CA(s) that signed the hub's certificate; None for the
            system's roots.
        client_certificate: ``(certificate chain PEM, private key PEM)`` for mutual TLS.
        credentials: ready-made channel credentials (overrides the three above).
        interceptors: ``grpc.aio`` client interceptors, outermost first.
        options: extra channel options, e.g. ``("grpc.ssl_target_name_override", ...)``.
    """

    address: str
    tls: bool = False
    root_certificates: bytes | None = None
    client_certificate: tuple[bytes, bytes] | None = None
    credentials: grpc.ChannelCredentials | None = None
    interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
    options: Sequence[tuple[str, Any]] = ()

    def open(self) -> grpc.aio.Channel:
        """A new ``grpc.aio`` channel (call from the event loop that will use it)."""
        options = [("grpc.primary_user_agent", USER_AGENT), *self.options]
        interceptors = list(self.interceptors) or None
        credentials = self.credentials
        if credentials is None and (
            self.tls or self.root_certificates is not None or self.client_certificate is not None
        ):
            chain, key = self.client_certificate or (None, None)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.root_certificates, private_key=key, certificate_chain=chain
            )
        if credentials is None:
            return grpc.aio.insecure_channel(
                self.address, options=options, interceptors=interceptors
            )
        return grpc.aio.secure_channel(
            self.address, credentials, options=options, interceptors=interceptors
        )


def trace_context() -> list[tuple[str, str]]:
    """The current OpenTelemetry context as W3C headers (``traceparent``, ``tracestate``...).

    Empty when ``opentelemetry-api`` is not installed or no span is active. Uses the
    globally configured propagator, so baggage goes out too when the application set that up.
    """
    try:
        from opentelemetry import propagate
    except ImportError:
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return sorted(carrier.items())


def check_metadata(metadata: Metadata) -> None:
    """Refuse metadata the SDK sets itself, or keys gRPC would reject later, less clearly.

    Raises:
        ValueError: for a reserved, upper-case or binary-suffixed key with a text value.
    """
    for key, _ in metadata:
        if key in _RESERVED_KEYS:
            raise ValueError(f"metadata {key!r} is set by the SDK")
        if key != key.lower():
            raise ValueError(f"metadata keys must be lower-case: {key!r}")


def call_metadata(api_key: str, *layers: Metadata) -> tuple[tuple[str, str], ...]:
    """The metadata of one call: the API key, each layer in turn, then the trace context.

    Args:
        api_key: sent as ``authorization: Bearer <api key>``.
        layers: the client's default metadata, then the call's own.
    """
    merged: list[tuple[str, str]] = [("authorization", f"Bearer {api_key}")]
    for layer in layers:
        merged.extend(layer)
    merged.extend(trace_context())
    return tuple(merged)
