"""Forwarding: invoices/s delivered to the FBR simulator (50 ms per answer) vs concurrency/latency.

The backlog is the PostgreSQL ingest run's invoices (queued with the forwarder off). For each
(transport, concurrency) the backlog is reset to QUEUED, the simulator (its own process) and a
hub with the forwarder on are started, and the ACCEPTED count is polled: the rate is taken
between 2% and 95% of the backlog (or over at most ``window`` seconds), so hub start-up and
the tail do not count. The ideal is concurrency / latency (Little's law).

The hub has no setting for the FBR transport, so it runs through :mod:`bench.hub_launcher`
(``start_hub`` with an explicit ``FbrClient``). A client-only table (``FbrClient`` against a
bare 50 ms server, :mod:`bench.fbr_client_bench`) is shown beside it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from bench import fbr_client_bench
from bench.common import POSTGRES_URL, markdown_table, start_simulator
from bench.report import Section
from tests.reliability.processes import REPO_ROOT, HubProcess

LATENCY = 0.05
RESET = (
    "UPDATE invoices SET state = 'QUEUED', attempt_count = 0, next_attempt_at = now(), "
    "lease_owner = NULL, lease_expires_at = NULL, fbr_invoice_number = NULL, fbr_dated = NULL, "
    "item_statuses = NULL, error = NULL WHERE state <> 'REJECTED_LOCAL'",
    "DELETE FROM delivery_attempts",
    "DELETE FROM result_events",
    "UPDATE tenants SET result_seq = 0",
)


def reset_backlog(engine: sa.Engine) -> int:
    """Put every stored invoice back in the queue; return the backlog size."""
    with engine.begin() as connection:
        for statement in RESET:
            connection.execute(sa.text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE invoices"))
        connection.execute(sa.text("VACUUM ANALYZE delivery_attempts"))
        count = connection.scalar(sa.text("SELECT count(*) FROM invoices WHERE state = 'QUEUED'"))
    return int(count or 0)


def states(engine: sa.Engine) -> dict[str, int]:
    """Invoices per state."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT state, count(*) FROM invoices GROUP BY state"))
        return {state: int(count) for state, count in rows}


async def measure(engine: sa.Engine, backlog: int, window: float) -> tuple[float, int, float]:
    """Poll the ACCEPTED count; return (invoices/s, delivered in the window, window seconds)."""
    low, high = max(1, int(backlog * 0.02)), int(backlog * 0.95)
    query = sa.text("SELECT count(*) FROM invoices WHERE state = 'ACCEPTED'")
    give_up = time.monotonic() + 60
    start: tuple[float, int] | None = None
    while True:
        with engine.connect() as connection:
            accepted = int(connection.scalar(query) or 0)
        now = time.monotonic()
        if start is None:
            if accepted >= low:
                start = (now, accepted)
            elif now > give_up:
                raise RuntimeError("the hub delivered nothing within 60 s")
        elif accepted >= high or now - start[0] >= window:
            seconds = now - start[0]
            return (accepted - start[1]) / seconds, accepted - start[1], seconds
        await asyncio.sleep(0.25)


async def hub_run(
    work: Path, engine: sa.Engine, transport: str, concurrency: int, window: float
) -> dict[str, float | int | str]:
    """One forwarding measurement."""
    backlog = reset_backlog(engine)
    simulator, base_url = await start_simulator(work / "simulator.log", LATENCY)
    hub = HubProcess.start(
        work / f"hub-forward-{transport}-{concurrency}.log",
        {
            "database_url": POSTGRES_URL,
            "fbr_base_url": base_url,
            "forwarder_concurrency": concurrency,
            "forwarder_claim_batch": max(200, concurrency),
            "fbr_read_timeout_seconds": 30,
        },
        module="bench.hub_launcher",
        args=("--transport", transport),
    )
    try:
        await hub.wait_serving()
        rate, delivered, seconds = await measure(engine, backlog, window)
    finally:
        await hub.stop(timeout=5)
        simulator.stop()
    counts = states(engine)
    failed = sum(v for k, v in counts.items() if k in {"IN_DOUBT", "REJECTED_FBR"})
    return {
        "transport": transport,
        "concurrency": concurrency,
        "rate": rate,
        "delivered": delivered,
        "seconds": seconds,
        "failed": failed,
    }


def client_only(requests: int) -> list[fbr_client_bench.Result]:
    """FbrClient alone against a bare 50 ms server, both transports, concurrency 64 and 256."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.fbr_client_bench", "--serve", "--delay", str(LATENCY)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    results = []
    try:
        assert server.stdout is not None
        base_url = f"http://127.0.0.1:{int(server.stdout.readline().split()[1])}"
        for concurrency in (64, 256):
            for transport in fbr_client_bench.TRANSPORTS:
                results.append(
                    asyncio.run(
                        fbr_client_bench.run_one(base_url, transport, concurrency, requests)
                    )
                )
    finally:
        server.terminate()
        server.wait()
    return results


async def run(work: Path, scale: float) -> Section:
    """Hub-level forwarding at concurrency 64 and 256 with both transports."""
    engine = sa.create_engine(POSTGRES_URL)
    window = max(8.0, 20.0 * scale)
    results = []
    try:
        for transport in ("default", "httpx"):
            for concurrency in (64, 256):
                print(f"  forwarding: hub, {transport} transport, concurrency {concurrency}")
                results.append(await hub_run(work, engine, transport, concurrency, window))
    finally:
        engine.dispose()
    rows = []
    verdicts = []
    for r in results:
        ideal = int(r["concurrency"]) / LATENCY
        share = float(r["rate"]) / ideal
        name = "aiohttp (default)" if r["transport"] == "default" else "httpx AsyncHTTPTransport"
        rows.append(
            [
                name,
                r["concurrency"],
                f"{int(r['delivered']):,}",
                f"{float(r['seconds']):.1f}",
                f"{float(r['rate']):,.0f}",
                f"{ideal:,.0f}",
                f"{share:.0%}",
                r["failed"],
            ]
        )
        if r["transport"] == "default":
            verdicts.append(
                f"Target >= 90% of ideal at concurrency {r['concurrency']}: {share:.0%} -> "
                + ("MET" if share >= 0.9 else "NOT MET")
            )
    table = markdown_table(
        ["hub FBR transport", "conc", "delivered", "s", "inv/s", "ideal", "of ideal", "not ok"],
        rows,
    )
    print("  forwarding: FbrClient alone (client-level comparison)", flush=True)
    clients = await asyncio.to_thread(client_only, max(600, int(1500 * scale)))
    client_rows = [
        [
            c.transport,
            c.concurrency,
            c.requests,
            f"{c.requests / c.seconds:,.0f}",
            f"{c.requests / c.seconds / (c.concurrency / LATENCY):.0%}",
            f"{c.client_cpu_us:,.0f}",
        ]
        for c in clients
    ]
    client_table = markdown_table(
        ["FbrClient transport", "conc", "requests", "req/s", "of ideal", "client CPU µs/req"],
        client_rows,
    )
    return Section(
        f"Forwarding to the simulator at {LATENCY * 1000:.0f} ms per answer (PostgreSQL)",
        table + "\n\nClient only (no hub, no database; a bare 50 ms server):\n\n" + client_table,
        [
            "Rate measured between 2% and 95% of the backlog or over at most "
            f"{window:.0f} s; 'not ok' = invoices ending IN_DOUBT or REJECTED_FBR.",
            "The httpx rows run the same hub with httpx's own pool (what "
            "FBRHUB_FBR_HTTP_TRANSPORT=httpx selects), via bench/hub_launcher.py.",
            "The simulator validates each invoice with the full rule table (its own process); "
            "at high rates it competes with the hub and PostgreSQL for the 2 cores.",
            *verdicts,
        ],
        {"results": results},
    )
