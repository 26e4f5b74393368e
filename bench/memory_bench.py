"""Memory: hub RSS with a growing backlog queued behind a stalled FBR, extrapolated to 1,000,000.

The simulator answers after an hour, so the forwarder holds its full window of requests in
flight and everything else waits in the database. The hub (``fbrhub serve``, PostgreSQL,
concurrency 64) is fed in steps by a streaming client; after each step its RSS is read from
``/proc/<pid>/status``. A least-squares line through (backlog, RSS) gives the slope per
queued invoice and the RSS it predicts at 1,000,000.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.common import POSTGRES_URL, make_tenant, markdown_table, reset_database, start_simulator
from bench.ingest_bench import run_client
from bench.report import Section
from server.processes import ChildProcess, spawn_hub

MB = 2**20


async def settled_rss(hub: ChildProcess) -> int:
    """RSS once two readings 0.5 s apart agree within 1 MB (at most 5 s)."""
    previous = hub.rss_bytes()
    for _ in range(10):
        await asyncio.sleep(0.5)
        current = hub.rss_bytes()
        if abs(current - previous) < MB:
            return current
        previous = current
    return previous


def fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of RSS bytes over backlog size."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0
    return mean_y - slope * mean_x, slope


async def run(work: Path, workload: Path, scale: float) -> Section:
    """Feed the stalled hub step by step and record its RSS."""
    steps = [int(s * scale) for s in (20_000, 50_000, 100_000)]
    await asyncio.to_thread(reset_database, POSTGRES_URL)
    tenant = await make_tenant(POSTGRES_URL)
    simulator = await start_simulator(work / "simulator-stalled.log", 3600.0)
    hub = spawn_hub(
        work / "hub-memory.log",
        {
            "database_url": POSTGRES_URL,
            "fbr_base_url": simulator.url,
            "forwarder_concurrency": 64,
            "fbr_read_timeout_seconds": 7200,
            "forwarder_lease_seconds": 20000,
            "log_level": "WARNING",
        },
    )
    points: list[tuple[int, int]] = []
    try:
        await hub.wait_serving()
        points.append((0, await settled_rss(hub)))
        done = 0
        for target in steps:
            print(f"  memory: backlog {target:,}", flush=True)
            await run_client(
                work / "client.log",
                *("stream", "--address", hub.address, "--api-key", tenant.api_key),
                *("--workload", str(workload), "--start", str(done)),
                *("--count", str(target - done)),
            )
            done = target
            points.append((done, await settled_rss(hub)))
    finally:
        hub.kill()  # SIGTERM would wait an hour for the stalled requests
        await simulator.stop(timeout=10)
    intercept, slope = fit(points[1:])
    # A slope at or below zero is noise around a flat line: the largest reading stands.
    at_million = max(intercept + slope * 1_000_000, max(rss for _, rss in points))
    rows = [[f"{n:,}", f"{rss / MB:,.0f}"] for n, rss in points]
    rows.append(["1,000,000 (extrapolated)", f"{at_million / MB:,.0f}"])
    return Section(
        "Memory: hub RSS with invoices queued behind a stalled FBR (PostgreSQL)",
        markdown_table(["queued invoices", "hub RSS MB"], rows),
        [
            f"Slope over the loaded points: {slope:,.1f} bytes per queued invoice "
            f"({slope * 1_000_000 / MB:,.1f} MB per million); intercept "
            f"{intercept / MB:,.0f} MB.",
            f"Extrapolated RSS at 1,000,000 queued: {at_million / MB:,.0f} MB "
            "(the fitted line, or the largest reading when the slope is not positive).",
            "Forwarder concurrency 64: 64 requests held open by the simulator, the rest in "
            "the database.",
        ],
        {"slope_bytes": slope, "rss_at_million_mb": at_million / MB},
    )
