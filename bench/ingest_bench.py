"""Ingest: a streaming ERP client to committed acks, on SQLite and PostgreSQL, against baselines.

- Hub: ``fbrhub serve`` as a process with the forwarder off, one SubmitInvoices stream from
  another process (batches of 500, 8 in flight: the hub's default window of 4,000);
  invoices/s from the first write to the last ack, and per-batch ack latency (write to ack,
  acks come only after the commit).
- Raw COPY: psycopg ``cursor.copy`` of the very rows the hub stores (same table, same
  columns and payload), 500 rows per transaction, from this process.
- Naive: one unary RPC and one transaction per invoice (:mod:`bench.naive_server`), with 1
  and with 64 calls in flight.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.common import (
    BATCH_SIZE,
    POSTGRES_URL,
    REPO_ROOT,
    BenchTenant,
    cpu_seconds,
    load_workload,
    make_tenant,
    markdown_table,
    reset_database,
)
from bench.report import Section
from bench.workload import SELLER, stored_row
from fbrhub.v1 import invoice_pb2
from server.api.convert.invoices import invoice_to_domain
from server.processes import HOST, ChildProcess, child_env, free_port, spawn_hub

COPY_COLUMNS = (
    "id",
    "tenant_id",
    "erp_reference",
    "content_sha256",
    "channel",
    "state",
    "invoice_type",
    "invoice_date",
    "payload",
    "attempt_count",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


async def run_client(log: Path, *args: str) -> dict[str, Any]:
    """Run ``python -m bench.load_client <args>`` and return its JSON result."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.load_client", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=log.open("ab"),
        cwd=REPO_ROOT,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load client failed ({process.returncode}); see {log}")
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


async def hub_ingest(
    work: Path,
    url: str,
    workload: Path,
    start: int,
    count: int,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], BenchTenant]:
    """Fresh database, hub process without forwarder, one streaming client.

    ``env``: more variables for the hub (``OTEL_*``). The result has the hub's CPU time per
    invoice (``cpu_us``) besides the client's figures.
    """
    await asyncio.to_thread(reset_database, url)
    tenant = await make_tenant(url)
    hub = spawn_hub(
        work / "hub-ingest.log",
        {"database_url": url, "forwarder_enabled": "false", "log_level": "WARNING"},
        env=env,
    )
    try:
        await hub.wait_serving()
        cpu_start = cpu_seconds(hub.pid)
        result = await run_client(
            work / "client.log",
            *("stream", "--address", hub.address, "--api-key", tenant.api_key),
            *("--workload", str(workload), "--start", str(start), "--count", str(count)),
        )
        result["cpu_us"] = (cpu_seconds(hub.pid) - cpu_start) / count * 1e6
        result["hub_rss_mb"] = hub.rss_bytes() / 2**20
    finally:
        await hub.stop()
    return result, tenant


def copy_rows(url: str, messages: list[bytes]) -> float:
    """COPY the hub's stored form of ``messages`` as a new tenant; return seconds taken."""
    tenant_id = uuid.uuid4()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    seller = {
        "seller_ntn_cnic": SELLER.ntn_cnic,
        "seller_business_name": SELLER.business_name,
        "seller_province": SELLER.province,
        "seller_address": SELLER.address,
    }
    rows = []
    for message in messages:
        invoice = invoice_to_domain(invoice_pb2.Invoice.FromString(message))
        values = stored_row(tenant_id, invoice)
        payload = orjson.loads(values["payload"])
        values["payload"] = orjson.dumps({**payload, **seller}).decode()
        rows.append(tuple(values[c] for c in COPY_COLUMNS))
    statement = f"COPY invoices ({', '.join(COPY_COLUMNS)}) FROM STDIN"
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "INSERT INTO tenants (id, seller_ntn_cnic, business_name, province, address, "
            "fbr_environment, fbr_token, result_seq, created_at) "
            "VALUES (%s, %s, 'copy', 'PUNJAB', 'x', 'sandbox', 'copy', 0, now())",
            (tenant_id, SELLER.ntn_cnic),
        )
        connection.commit()
        started = time.perf_counter()
        for offset in range(0, len(rows), BATCH_SIZE):
            with connection.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows[offset : offset + BATCH_SIZE]:
                    copy.write_row(row)
            connection.commit()
        seconds = time.perf_counter() - started
        # The copied rows are not a backlog for the forwarding benchmark.
        connection.execute("DELETE FROM invoices WHERE tenant_id = %s", (tenant_id,))
        connection.execute("DELETE FROM tenants WHERE id = %s", (tenant_id,))
        connection.commit()
    return seconds


async def naive(
    work: Path, url: str, tenant: BenchTenant, workload: Path, start: int, count: int, calls: int
) -> dict[str, Any]:
    """The naive server on ``url`` and a unary client with ``calls`` in flight."""
    port = free_port()
    server = ChildProcess.start(
        [
            *(sys.executable, "-m", "bench.naive_server", "--database-url", url),
            *("--tenant-id", str(tenant.id), "--port", str(port)),
        ],
        work / "naive-server.log",
        child_env(),
        name="naive server",
        address=f"{HOST}:{port}",
        cwd=REPO_ROOT,
    )
    try:
        await server.wait_port()
        return await run_client(
            work / "client.log",
            *("unary", "--address", server.address, "--concurrency", str(calls)),
            *("--workload", str(workload), "--start", str(start), "--count", str(count)),
        )
    finally:
        await server.stop(timeout=10)


def _rate(result: dict[str, Any]) -> float:
    return float(result["invoices"]) / float(result["seconds"])


async def run(work: Path, workload: Path, scale: float) -> Section:
    """All ingest measurements; leaves the PostgreSQL hub rows queued (the forwarding backlog)."""
    n_sqlite = max(2000, int(20_000 * scale))
    n_pg = max(2000, int(30_000 * scale))
    n_naive_1 = max(300, int(1_500 * scale))
    n_naive_64 = max(500, int(5_000 * scale))
    sqlite_url = f"sqlite+aiosqlite:///{work / 'ingest.db'}"

    print(f"  ingest: hub on SQLite, {n_sqlite:,} invoices", flush=True)
    on_sqlite, _ = await hub_ingest(work, sqlite_url, workload, 0, n_sqlite)
    print(f"  ingest: hub on PostgreSQL, {n_pg:,} invoices", flush=True)
    on_pg, tenant = await hub_ingest(work, POSTGRES_URL, workload, 0, n_pg)
    print(f"  ingest: raw COPY of the same {n_pg:,} rows", flush=True)
    copy_seconds = copy_rows(POSTGRES_URL, load_workload(workload, 0, n_pg))
    print(f"  ingest: naive unary, 1 in flight, {n_naive_1:,}", flush=True)
    naive_1 = await naive(work, POSTGRES_URL, tenant, workload, n_pg, n_naive_1, 1)
    print(f"  ingest: naive unary, 64 in flight, {n_naive_64:,}", flush=True)
    naive_64 = await naive(work, POSTGRES_URL, tenant, workload, n_pg + n_naive_1, n_naive_64, 64)

    copy_rate = n_pg / copy_seconds
    pg_rate, naive_best = _rate(on_pg), max(_rate(naive_1), _rate(naive_64))

    def row(name: str, result: dict[str, Any]) -> list[str]:
        rate = _rate(result)
        return [
            name,
            f"{result['invoices']:,}",
            f"{result['seconds']:.1f}",
            f"{rate:,.0f}",
            f"{result['p50_ms']:.1f}",
            f"{result['p99_ms']:.1f}",
            f"{rate / copy_rate:.0%}",
        ]

    rows = [
        row("hub stream -> SQLite (500 x 8 in flight)", on_sqlite),
        row("hub stream -> PostgreSQL (500 x 8 in flight)", on_pg),
        [
            "raw COPY -> PostgreSQL (500/txn)",
            f"{n_pg:,}",
            f"{copy_seconds:.1f}",
            f"{copy_rate:,.0f}",
            "-",
            "-",
            "100%",
        ],
        row("naive unary -> PostgreSQL, 1 in flight", naive_1),
        row("naive unary -> PostgreSQL, 64 in flight", naive_64),
    ]
    table = markdown_table(
        ["design", "invoices", "s", "invoices/s", "p50 ms", "p99 ms", "of COPY"], rows
    )
    verdicts = [
        ("PostgreSQL ingest >= 5,000 inv/s", pg_rate, 5000.0, f"{pg_rate:,.0f} inv/s"),
        (
            "PostgreSQL ingest >= 40% of COPY",
            pg_rate / copy_rate,
            0.40,
            f"{pg_rate / copy_rate:.0%}",
        ),
        (
            "PostgreSQL ingest >= 5x naive (best)",
            pg_rate / naive_best,
            5.0,
            f"{pg_rate / naive_best:.1f}x",
        ),
    ]
    notes = [
        "Latency columns: per batch of 500 for the stream (write -> ack after commit), per "
        "call for the naive design.",
        f"Ack outcomes (PostgreSQL): {on_pg['outcomes']}; SQLite: {on_sqlite['outcomes']}.",
        f"Hub RSS after the PostgreSQL run: {on_pg['hub_rss_mb']:.0f} MB.",
        *(
            f"Target {name}: {shown} -> {'MET' if value >= target else 'NOT MET'}"
            for name, value, target, shown in verdicts
        ),
    ]
    return Section(
        "Ingest (stream -> validate -> commit -> ack), forwarder off",
        table,
        notes,
        {
            "pg_rate": pg_rate,
            "sqlite_rate": _rate(on_sqlite),
            "copy_rate": copy_rate,
            "naive_1": _rate(naive_1),
            "naive_64": _rate(naive_64),
            "pg_p50": on_pg["p50_ms"],
            "pg_p99": on_pg["p99_ms"],
            "verdicts": [(n, v >= t, s) for n, v, t, s in verdicts],
            "backlog_tenant": tenant,
        },
    )
