"""Assemble and run the hub: gRPC server, forwarder, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import uuid
from dataclasses import dataclass, field

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from clients.fbr.client import FbrClient
from fbrhub.v1 import (
    admin_service_pb2_grpc,
    audit_service_pb2_grpc,
    invoice_service_pb2_grpc,
    privacy_service_pb2_grpc,
)
from server.access.api_keys import ApiKeyVerifier
from server.access.failures import FailureLimiter
from server.api.admin import AdminService
from server.api.audit import AuditService
from server.api.authz import HUB_SERVICES as HUB_SERVICE_DESCRIPTORS
from server.api.interceptor import HubInterceptor
from server.api.invoices import InvoiceService
from server.api.privacy import PrivacyService
from server.api.telemetry import TelemetryInterceptor
from server.api.tls import bind_port
from server.api.tokens import TokenCodec
from server.audit.access import AccessAuditor
from server.db.encryption import configure_secrets
from server.db.engine import Database
from server.db.notify import Notifier, PostgresListener
from server.invoices.delivery import Forwarder, ForwarderConfig
from server.invoices.intake import Ingestor
from server.invoices.monitor import QueueMonitor, record_circuit_alert
from server.invoices.operator import Operator
from server.invoices.pacing import BreakerChange
from server.invoices.reference_data import ReferenceStore
from server.observability.redaction import install_credential_filter
from server.privacy.retention import run_periodically
from server.settings import Settings

logger = logging.getLogger(__name__)

# Reflection v1 has v1alpha's messages under another package name; grpcio-reflection serves
# only v1alpha, so the same servicer answers under both names (tools ask for either).
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
# Health and reflection answer without an API key; every other service needs one.
PUBLIC_SERVICES = frozenset({health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1})
HUB_SERVICES = tuple(service.full_name for service in HUB_SERVICE_DESCRIPTORS)


@dataclass
class Hub:
    """A running hub: what :func:`start_hub` built, and how to stop it."""

    settings: Settings
    db: Database
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    fbr: FbrClient
    forwarder: Forwarder | None
    notifier: Notifier
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    monitor: QueueMonitor | None = None
    listener: PostgresListener | None = None
    retention_stop: asyncio.Event = field(default_factory=asyncio.Event)
    periodic_stop: asyncio.Event = field(default_factory=asyncio.Event)
    auditor: AccessAuditor | None = None
    followers_stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        """``host:port`` to connect to."""
        host = self.settings.grpc_listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, stop claiming, drain RPCs, finish in-flight sends."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        # Followers (StreamResults, StreamAuditEvents) end first, cleanly: the grace is for
        # in-flight work, and a follower only ever waits.
        self.followers_stop.set()
        await self.health.enter_graceful_shutdown()
        if self.forwarder is not None:
            await self.forwarder.stop()
        if self.monitor is not None:
            self.monitor.stop()
        self.retention_stop.set()
        self.periodic_stop.set()
        await self.server.stop(grace)
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.auditor is not None:
            try:
                await self.auditor.flush()  # the last window of failed authentications
            except Exception:  # losing counts must not block a stop
                logger.exception("could not write the failed-authentication audit events")
        if self.listener is not None:
            await self.listener.stop()
        await self.fbr.aclose()
        await self.db.dispose()


def forwarder_config(settings: Settings) -> ForwarderConfig:
    """The forwarder's tuning, from settings."""
    return ForwarderConfig(
        concurrency=settings.forwarder_concurrency,
        prefetch=settings.forwarder_prefetch,
        claim_batch=settings.forwarder_claim_batch,
        poll_seconds=settings.forwarder_poll_seconds,
        lease_seconds=settings.forwarder_lease_seconds,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        tenant_rate_per_second=settings.tenant_rate_per_second,
        tenant_burst=settings.tenant_burst,
        tenant_concurrency=settings.tenant_concurrency,
        latency_target_seconds=settings.fbr_latency_target_seconds,
        breaker_failure_threshold=settings.breaker_failure_threshold,
        breaker_open_seconds=settings.breaker_open_seconds,
        breaker_max_open_seconds=settings.breaker_max_open_seconds,
    )


def build_fbr_client(settings: Settings) -> FbrClient:
    """The process's one FBR client, configured from settings."""
    transport = None
    if settings.fbr_http_transport == "httpx":
        limit = settings.forwarder_concurrency
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            verify=settings.fbr_ca_bundle or True,
        )
    return FbrClient(
        base_url=settings.fbr_base_url,
        pos_base_url=settings.fbr_pos_base_url,
        connect_timeout=settings.fbr_connect_timeout_seconds,
        read_timeout=settings.fbr_read_timeout_seconds,
        max_connections=settings.forwarder_concurrency,
        verify=settings.fbr_ca_bundle or True,
        transport=transport,
    )


def _build_server(
    settings: Settings,
    *,
    db: Database,
    notifier: Notifier,
    ingestor: Ingestor,
    verifier: ApiKeyVerifier,
    telemetry: TelemetryInterceptor,
    auditor: AccessAuditor,
    followers_stop: asyncio.Event,
) -> grpc.aio.Server:
    """The gRPC server with the interceptors and every service (not yet bound or started)."""
    failures = FailureLimiter(settings.auth_failures_per_peer, settings.auth_failure_window_seconds)
    server = grpc.aio.server(
        interceptors=[
            telemetry,
            HubInterceptor(
                verifier,
                public_services=PUBLIC_SERVICES,
                auditor=auditor,
                failures=failures,
            ),
        ],
        options=[
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    tokens = TokenCodec(settings.cursor_secret.get_secret_value().encode())
    operator = Operator(db, notifier, ingestor)
    invoice_service_pb2_grpc.add_InvoiceServiceServicer_to_server(
        InvoiceService(db, ingestor, notifier, tokens, settings, operator, stopping=followers_stop),
        server,
    )
    privacy_service_pb2_grpc.add_PrivacyServiceServicer_to_server(
        PrivacyService(db, tokens, settings), server
    )
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(
        AuditService(db, notifier, tokens, settings, stopping=followers_stop), server
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminService(db, verifier, tokens, settings), server
    )
    return server


async def start_hub(
    settings: Settings,
    *,
    db: Database | None = None,
    fbr: FbrClient | None = None,
) -> Hub:
    """Build and start a hub (the database must already be migrated)."""
    install_credential_filter()  # grpc logs undecodable metadata (an API key) in full
    db = db or Database(settings.database_url)
    fbr = fbr or build_fbr_client(settings)
    notifier = Notifier()
    configure_secrets(settings)
    reference = ReferenceStore(db)
    await reference.refresh()
    ingestor = Ingestor(
        db,
        notifier,
        max_pending=settings.tenant_max_pending,
        max_rejected_bytes=settings.tenant_max_rejected_bytes,
        reference=reference,
    )
    telemetry = TelemetryInterceptor(
        untraced_services=PUBLIC_SERVICES,
        server_address=settings.grpc_listen.rsplit(":", 1)[0].strip("[]"),
    )
    auditor = AccessAuditor(db, notifier, window_seconds=settings.auth_audit_window_seconds)
    followers_stop = asyncio.Event()
    server = _build_server(
        settings,
        db=db,
        notifier=notifier,
        ingestor=ingestor,
        verifier=ApiKeyVerifier(db),
        telemetry=telemetry,
        auditor=auditor,
        followers_stop=followers_stop,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _enable_reflection(server, [*HUB_SERVICES, *sorted(PUBLIC_SERVICES)])
    port = bind_port(server, settings)
    telemetry.server_port = port
    await server.start()
    for name in HUB_SERVICES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(health.OVERALL_HEALTH, health_pb2.HealthCheckResponse.SERVING)
    hub = Hub(
        settings,
        db,
        server,
        port,
        health_servicer,
        fbr,
        None,
        notifier,
        auditor=auditor,
        followers_stop=followers_stop,
    )
    _start_background(hub, reference)
    logger.info("hub listening on %s", hub.address)
    return hub


def _enable_reflection(server: grpc.aio.Server, service_names: list[str]) -> None:
    """Serve gRPC reflection, v1 and v1alpha, listing ``service_names``."""
    servicer = reflection.aio.ReflectionServicer(service_names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler})
            for name in (reflection.SERVICE_NAME, REFLECTION_V1)
        ]
    )


def _start_background(hub: Hub, reference: ReferenceStore) -> None:
    """Start the hub's background work: listener, forwarder, monitor, refresher, sweeper."""
    settings, db, notifier = hub.settings, hub.db, hub.notifier
    if db.is_postgres:
        hub.listener = PostgresListener(settings.database_url, notifier)
        hub.listener.start()
    if settings.forwarder_enabled:

        async def circuit_alert(change: BreakerChange, tenants: list[uuid.UUID]) -> None:
            await record_circuit_alert(db, notifier, change, tenants)

        hub.forwarder = Forwarder(
            db,
            hub.fbr,
            notifier,
            forwarder_config(settings),
            worker_id=settings.worker_id,
            on_circuit_change=circuit_alert,
        )
        hub.tasks.append(asyncio.create_task(hub.forwarder.run(), name="forwarder"))
    hub.monitor = QueueMonitor(
        db,
        notifier,
        interval_seconds=settings.monitor_interval_seconds,
        stuck_after_seconds=settings.stuck_after_seconds,
    )
    hub.tasks.append(asyncio.create_task(hub.monitor.run(), name="queue-monitor"))
    hub.tasks.append(
        asyncio.create_task(
            reference.run(hub.periodic_stop, settings.refdata_refresh_seconds), name="refdata"
        )
    )
    if hub.auditor is not None:
        hub.tasks.append(asyncio.create_task(hub.auditor.run(hub.periodic_stop), name="auth-audit"))
    if settings.retention_sweeper_enabled:
        sweeper = run_periodically(
            db,
            retention_years=settings.retention_years,
            interval_seconds=settings.retention_sweep_interval_seconds,
            stop=hub.retention_stop,
        )
        hub.tasks.append(asyncio.create_task(sweeper, name="retention-sweeper"))


def settle_garbage_collector() -> None:
    """Tune the garbage collector for a long-running server, once start-up is done.

    Everything built at start-up (modules, SQLAlchemy metadata, protobuf descriptors) lives
    for the whole process, yet every full collection walked it again: under load that was
    about a tenth of the hub's time, in pauses of up to ~130 ms that delayed every request in
    flight (bench/). ``gc.freeze`` moves those objects out of the collector's view, and a
    larger first-generation threshold lets short-lived request objects die in fewer passes.
    Reference cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


async def serve(settings: Settings) -> None:
    """Run the hub until SIGTERM or SIGINT, then shut down gracefully."""
    hub = await start_hub(settings)
    settle_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutting down: draining RPCs and in-flight FBR requests")
    await hub.stop()
    logger.info("hub stopped")
