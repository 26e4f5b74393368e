"""Shared pieces of the benchmarks: databases, tenants, workload file, the simulator, tables."""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from bench.workload import FBR_TOKEN, SELLER, bench_invoice, to_proto
from fbrhub.v1 import invoice_service_pb2
from server.access.api_keys import create_api_key
from server.access.tenants import create_tenant
from server.db.engine import Database
from server.db.migrate import upgrade
from server.processes import ChildProcess, spawn_simulator

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "FBRHUB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
)
TABLES = ("result_events", "delivery_attempts", "invoices", "api_keys", "tenants")
BATCH_SIZE = 500
DISTINCT_BODIES = 1000


@dataclass(frozen=True)
class BenchTenant:
    """The tenant every benchmark submits as."""

    id: uuid.UUID
    api_key: str


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sync_url(url: str) -> str:
    """The synchronous SQLAlchemy URL for an async one."""
    return url.replace("+aiosqlite", "")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it does not exist yet."""
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            )
            if not exists:
                quoted = admin.dialect.identifier_preparer.quote(str(target.database))
                connection.execute(sa.text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()


def reset_database(url: str) -> None:
    """Migrate ``url`` to head and empty every hub table (SQLite: start from a new file)."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        upgrade(url)
        return
    ensure_database(url)
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
        connection.execute(sa.text("CHECKPOINT"))
    engine.dispose()


async def make_tenant(url: str) -> BenchTenant:
    """Create the benchmark seller and an ERP key in the database at ``url``."""
    db = Database(url)
    try:
        tenant_id = await create_tenant(
            db,
            seller_ntn_cnic=SELLER.ntn_cnic,
            business_name=SELLER.business_name,
            province=SELLER.province,
            address=SELLER.address,
            fbr_environment="sandbox",
            fbr_token=FBR_TOKEN,
        )
        _, key = await create_api_key(db, tenant_id, role="erp", name="bench")
    finally:
        await db.dispose()
    return BenchTenant(tenant_id, key)


def write_workload(path: Path, prefix: str, count: int) -> None:
    """Write ``count`` serialized SubmitInvoicesRequests-worth of invoices to ``path``.

    The file holds a pickled list of serialized ``Invoice`` messages, references
    ``{prefix}-0000001``..., built from :data:`DISTINCT_BODIES` distinct bodies (content
    repeats; references never do), so building 100k invoices takes seconds.
    """
    import random

    rng = random.Random(1)
    bodies = [to_proto(bench_invoice(f"{prefix}-body-{i}", rng)) for i in range(DISTINCT_BODIES)]
    messages: list[bytes] = []
    for index in range(count):
        message = bodies[index % DISTINCT_BODIES]
        message.erp_reference = f"{prefix}-{index + 1:07d}"
        messages.append(message.SerializeToString())
    path.write_bytes(pickle.dumps(messages))


def load_workload(path: Path, start: int, count: int) -> list[bytes]:
    """Serialized ``Invoice`` messages ``start .. start+count`` of a workload file."""
    messages: list[bytes] = pickle.loads(path.read_bytes())
    if start + count > len(messages):
        raise ValueError(f"the workload holds {len(messages)} invoices, not {start + count}")
    return messages[start : start + count]


def request_batches(messages: Sequence[bytes], size: int = BATCH_SIZE) -> list[bytes]:
    """Serialized SubmitInvoicesRequests of ``size`` invoices each (field 1 = invoices)."""
    batches = []
    for offset in range(0, len(messages), size):
        request = invoice_service_pb2.SubmitInvoicesRequest()
        request.MergeFromString(b"".join(_field1(m) for m in messages[offset : offset + size]))
        batches.append(request.SerializeToString())
    return batches


def _field1(message: bytes) -> bytes:
    # Length-delimited field 1 (repeated Invoice invoices = 1).
    length = len(message)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return b"\x0a" + bytes(varint) + message


async def start_simulator(log: Path, latency: float) -> ChildProcess:
    """The FBR simulator as its own process, ready, answering after ``latency`` seconds."""
    simulator = spawn_simulator(log, [f"{FBR_TOKEN}={SELLER.ntn_cnic}:sandbox"], latency=latency)
    await simulator.wait_port()
    return simulator


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table, columns padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *[line(r) for r in cells[1:]]])
