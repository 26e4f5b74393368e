"""Wiring of the privacy, audit and admin side of the hub into the gRPC server.

Kept out of ``server/app.py`` so that the assembly there stays a short list of steps:
register these services, bind the port with TLS or mutual TLS when configured, run the
retention sweeper.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import grpc

from fbrhub.v1 import admin_service_pb2_grpc, audit_service_pb2_grpc, privacy_service_pb2_grpc
from server.access.api_keys import ApiKeyVerifier
from server.api.admin import AdminService
from server.api.audit import AuditService
from server.api.authz import ADMIN_SERVICE, AUDIT_SERVICE, PRIVACY_SERVICE
from server.api.privacy import PrivacyService
from server.api.tokens import TokenCodec
from server.db.encryption import configure_token_keys, parse_keys
from server.db.engine import Database
from server.db.notify import Notifier
from server.privacy.retention import run_periodically
from server.settings import Settings


def configure_secrets(settings: Settings) -> None:
    """Install the keys that encrypt FBR tokens at rest."""
    configure_token_keys(parse_keys(settings.fbr_token_keys.get_secret_value()))


def add_governance_services(
    server: grpc.aio.Server,
    *,
    db: Database,
    notifier: Notifier,
    tokens: TokenCodec,
    settings: Settings,
    verifier: ApiKeyVerifier,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[str]:
    """Register PrivacyService, AuditService and AdminService; returns their full names."""
    privacy_service_pb2_grpc.add_PrivacyServiceServicer_to_server(
        PrivacyService(db, notifier, tokens, settings, clock=clock), server
    )
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(
        AuditService(db, notifier, tokens, settings), server
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminService(db, verifier, tokens, settings), server
    )
    return [PRIVACY_SERVICE.full_name, AUDIT_SERVICE.full_name, ADMIN_SERVICE.full_name]


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


def start_retention(db: Database, settings: Settings, stop: asyncio.Event) -> asyncio.Task[None]:
    """Run the retention sweeper periodically until ``stop`` is set."""
    return asyncio.create_task(
        run_periodically(
            db,
            retention_years=settings.retention_years,
            interval_seconds=settings.retention_sweep_interval_seconds,
            stop=stop,
        ),
        name="retention-sweeper",
    )
