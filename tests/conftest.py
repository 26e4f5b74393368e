"""Shared fixtures: both databases, the FBR simulator over real HTTP, a real in-process hub.

Every database test runs twice: on a fresh SQLite file and on PostgreSQL
(``FBRHUB_TEST_POSTGRES_URL``). Without that variable the PostgreSQL half is skipped
locally and reported at the end of the run; under CI (``CI`` set) its absence is an error,
so a CI run can never pass while silently leaving PostgreSQL out.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry

from clients.fbr_simulator import FbrSimulator, TokenGrant
from fbrhub.v1 import invoice_service_pb2_grpc
from server.access.api_keys import create_api_key
from server.access.roles import Role
from server.access.tenants import create_tenant
from server.app import Hub, start_hub
from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import Base
from server.observability.sampling import LinkFollowingSampler
from server.observability.telemetry import hub_resource
from server.settings import Settings

POSTGRES_URL = os.environ.get("FBRHUB_TEST_POSTGRES_URL", "")
# Every table the models define (emptied between PostgreSQL tests), derived so that a new
# table can never be forgotten here.
TABLES = tuple(table.name for table in Base.metadata.sorted_tables)
SELLER_NTN = "8885801"
SELLER_TOKEN = "sandbox-token-8885801"
OTHER_NTN = "7000006"
OTHER_TOKEN = "sandbox-token-7000006"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not POSTGRES_URL:
        raise pytest.UsageError(
            "CI must set FBRHUB_TEST_POSTGRES_URL: the PostgreSQL suite is required"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if POSTGRES_URL:
        terminalreporter.write_line("PostgreSQL suite: run against FBRHUB_TEST_POSTGRES_URL")
    else:
        terminalreporter.write_line(
            "PostgreSQL suite: NOT RUN (set FBRHUB_TEST_POSTGRES_URL to run it)", yellow=True
        )


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+psycopg", "+psycopg")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    """PostgreSQL migrated to head once per session."""
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        raise RuntimeError(f"FBRHUB_TEST_POSTGRES_URL is set but unreachable: {exc}") from exc
    finally:
        engine.dispose()
    upgrade(POSTGRES_URL)
    return POSTGRES_URL


# For the few tests about several hub processes on one database: only PostgreSQL serves
# several processes, so such a test has no SQLite variant at all (rather than a skipped one).
postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or PostgreSQL with emptied tables."""
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if not POSTGRES_URL:
        pytest.skip("FBRHUB_TEST_POSTGRES_URL not set")
    url = request.getfixturevalue("postgres_migrated")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    engine.dispose()
    yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The hub's Database object on the test database."""
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def simulator() -> AsyncIterator[FbrSimulator]:
    """The FBR DI simulator on a real local port, knowing two sandbox sellers."""
    sim = FbrSimulator(
        tokens={
            SELLER_TOKEN: TokenGrant(SELLER_NTN, "sandbox"),
            OTHER_TOKEN: TokenGrant(OTHER_NTN, "sandbox"),
        },
        seed=1,
    )
    await sim.start()
    yield sim
    await sim.stop()


@dataclass
class Tenant:
    """A tenant created for a test and an API key of it."""

    id: uuid.UUID
    api_key: str
    ntn: str

    @property
    def metadata(self) -> tuple[tuple[str, str]]:
        """Call metadata carrying the API key."""
        return (("authorization", f"Bearer {self.api_key}"),)


async def make_tenant(db: Database, ntn: str, token: str) -> Tenant:
    """Create a sandbox tenant with an ERP key."""
    tenant_id = await create_tenant(
        db,
        seller_ntn_cnic=ntn,
        business_name=f"Seller {ntn}",
        province="PUNJAB",
        address="1 Test Road, Lahore",
        fbr_environment="sandbox",
        fbr_token=token,
    )
    _, key = await create_api_key(db, tenant_id, role="erp", name="test")
    return Tenant(tenant_id, key, ntn)


@pytest.fixture
async def tenant(db: Database) -> Tenant:
    """The main test tenant (seller 8885801)."""
    return await make_tenant(db, SELLER_NTN, SELLER_TOKEN)


@pytest.fixture
async def other_tenant(db: Database) -> Tenant:
    """A second tenant (seller 7000006), for isolation tests."""
    return await make_tenant(db, OTHER_NTN, OTHER_TOKEN)


def hub_settings(database_url: str, fbr_base_url: str, **overrides: object) -> Settings:
    """Settings for an in-process test hub."""
    values: dict[str, object] = {
        "database_url": database_url,
        "grpc_listen": "127.0.0.1:0",
        "fbr_base_url": fbr_base_url,
        "fbr_read_timeout_seconds": 5.0,
        "forwarder_poll_seconds": 0.05,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "results_poll_seconds": 0.1,
        "shutdown_grace_seconds": 2.0,
        # Every test calls from 127.0.0.1: the per-address limit is tested on its own.
        "auth_failures_per_peer": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def hub(database_url: str, simulator: FbrSimulator, db: Database) -> AsyncIterator[Hub]:
    """A real hub: gRPC on a free port, forwarder delivering to the simulator."""
    settings = hub_settings(database_url, simulator.base_url)
    running = await start_hub(settings, db=Database(database_url))
    yield running
    await running.stop(grace=1.0)


@pytest.fixture
async def channel(hub: Hub) -> AsyncIterator[grpc.aio.Channel]:
    """A real client channel to the test hub."""
    async with grpc.aio.insecure_channel(hub.address) as chan:
        yield chan


@pytest.fixture
def invoices(channel: grpc.aio.Channel) -> invoice_service_pb2_grpc.InvoiceServiceStub:
    """An InvoiceService stub on the test channel."""
    return invoice_service_pb2_grpc.InvoiceServiceStub(channel)


# --- Roles, privacy, audit --------------------------------------------------------------


@dataclass
class RoleKeys:
    """One API key per role for a tenant, as call metadata."""

    tenant_id: uuid.UUID
    keys: dict[str, str]

    def metadata(self, role: str) -> tuple[tuple[str, str]]:
        """Call metadata carrying the key of ``role``."""
        return (("authorization", f"Bearer {self.keys[role]}"),)


async def make_role_keys(db: Database, tenant_id: uuid.UUID) -> RoleKeys:
    """Create a key of every role for a tenant."""
    keys = {}
    for role in Role:
        _, keys[role] = await create_api_key(db, tenant_id, role=role, name=f"test {role}")
    return RoleKeys(tenant_id, keys)


@pytest.fixture
async def role_keys(db: Database, tenant: Tenant) -> RoleKeys:
    """A key of every role for the main test tenant."""
    return await make_role_keys(db, tenant.id)


@pytest.fixture
async def gov_hub(database_url: str, simulator: FbrSimulator) -> AsyncIterator[Hub]:
    """A hub tuned for the privacy/audit tests: fast audit polling, cheap bcrypt."""
    settings = hub_settings(
        database_url,
        simulator.base_url,
        audit_poll_seconds=0.05,
        audit_heartbeat_seconds=0.3,
        password_bcrypt_rounds=4,
        retention_sweeper_enabled=False,
    )
    running = await start_hub(settings, db=Database(database_url))
    yield running
    await running.stop(grace=1.0)


@pytest.fixture
async def gov_channel(gov_hub: Hub) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to :func:`gov_hub`."""
    async with grpc.aio.insecure_channel(gov_hub.address) as chan:
        yield chan


# --- Telemetry ------------------------------------------------------------------------------


@dataclass
class MetricReaders:
    """The readers of the process's meter provider."""

    memory: InMemoryMetricReader
    prometheus: CollectorRegistry


@pytest.fixture(scope="session")
def metric_readers() -> MetricReaders:
    """The process's meter provider, installed once: read in memory and as Prometheus would.

    The hub's instruments come from the global (proxy) meter, and OpenTelemetry allows the
    global provider to be set only once per process, so every test shares these readers.
    """
    memory = InMemoryMetricReader()
    registry = CollectorRegistry()
    provider = MeterProvider(
        resource=hub_resource(instance_id="tests"),
        metric_readers=[memory, PrometheusMetricReader(registry=registry)],
    )
    otel_metrics.set_meter_provider(provider)
    return MetricReaders(memory, registry)


@pytest.fixture(scope="session")
def metric_reader(metric_readers: MetricReaders) -> InMemoryMetricReader:
    """The in-memory reader of the process's meter provider."""
    return metric_readers.memory


class _WhileRecording(SpanProcessor):
    """Hands finished spans to an exporter only while a test records them."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter
        self.recording = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self.exporter.export([span])


_RECORDER = _WhileRecording(InMemorySpanExporter())


@pytest.fixture(scope="session")
def span_recorder() -> _WhileRecording:
    """The process's tracer provider, installed once, with the hub's own sampler.

    Like the meter provider it can be set only once per process. Every trace without a
    parent or link is kept (the root sampler is ALWAYS_ON); the rest is the hub's sampling.
    """
    provider = TracerProvider(
        resource=hub_resource(instance_id="tests"), sampler=LinkFollowingSampler(ALWAYS_ON)
    )
    provider.add_span_processor(_RECORDER)
    trace.set_tracer_provider(provider)
    return _RECORDER


@pytest.fixture
def traced(span_recorder: _WhileRecording) -> Iterator[InMemorySpanExporter]:
    """The spans that end during this test (recording stops and is cleared after it)."""
    span_recorder.exporter.clear()
    span_recorder.recording = True
    yield span_recorder.exporter
    span_recorder.recording = False
    span_recorder.exporter.clear()
