"""The gRPC port: plaintext, TLS, or mutual TLS, as the settings say."""

from __future__ import annotations

from pathlib import Path

import grpc

from server.settings import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port (mutual TLS with a client CA); None for plaintext."""
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    key = Path(settings.tls_key_file).read_bytes()
    cert = Path(settings.tls_cert_file).read_bytes()
    client_ca = (
        Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def bind_port(server: grpc.aio.Server, settings: Settings) -> int:
    """Bind the gRPC listen address, with TLS when configured; returns the port."""
    credentials = server_credentials(settings)
    if credentials is None:
        return server.add_insecure_port(settings.grpc_listen)
    return server.add_secure_port(settings.grpc_listen, credentials)
