"""Micro-benchmark of FbrClient: aiohttp-backed default transport vs httpx's own pool.

A local aiohttp.web server (a separate process, so it does not share the client's event loop
or core) answers every DI post with the spec's success JSON after a fixed delay. At
concurrency C and delay D the ideal rate is C / D (Little's law); the table reports how close
each transport gets, and the CPU each side spends per request.

Run: ``.venv/bin/python bench/fbr_client_bench.py [--requests 2000] [--concurrency 64 256]``
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients.fbr.client import FbrClient
from clients.fbr.responses import OutcomeKind

PATH = "/di_data/v1/di/postinvoicedata_sb"
SUCCESS = orjson.dumps(
    {
        "invoiceNumber": "7000007DI1747119701593",
        "dated": "2025-05-13 12:01:41",
        "validationResponse": {
            "statusCode": "00",
            "status": "Valid",
            "error": "",
            "invoiceStatuses": [
                {
                    "itemSNo": str(n),
                    "statusCode": "00",
                    "status": "Valid",
                    "invoiceNo": f"7000007DI1747119701593-{n}",
                    "errorCode": "",
                    "error": "",
                }
                for n in range(1, 6)
            ],
        },
    }
)
# About 2 KB, a typical DI invoice: an SN001 sale with 5 lines.
INVOICE = {
    "invoiceType": "Sale Invoice",
    "invoiceDate": "2025-04-21",
    "sellerNTNCNIC": "8885801",
    "sellerBusinessName": "Benchmark Traders (Private) Limited",
    "sellerProvince": "Sindh",
    "sellerAddress": "Plot 12, Sector 7, Korangi Industrial Area, Karachi",
    "buyerNTNCNIC": "2046004",
    "buyerBusinessName": "Fertilizer Manufacturers Pakistan Limited",
    "buyerProvince": "Punjab",
    "buyerAddress": "14 Main Boulevard, Gulberg III, Lahore",
    "buyerRegistrationType": "Registered",
    "scenarioId": "SN001",
    "items": [
        {
            "hsCode": "0101.2100",
            "productDescription": f"Industrial product line {n} with a realistic description",
            "rate": "18%",
            "uoM": "Numbers, pieces, units",
            "quantity": n,
            "totalValues": 1180 * n,
            "valueSalesExcludingST": 1000 * n,
            "fixedNotifiedValueOrRetailPrice": 0,
            "salesTaxApplicable": 180 * n,
            "salesTaxWithheldAtSource": 0,
            "extraTax": "",
            "furtherTax": 0,
            "sroScheduleNo": "",
            "fedPayable": 0,
            "discount": 0,
            "saleType": "Goods at standard rate (default)",
            "sroItemSerialNo": "",
        }
        for n in range(1, 6)
    ],
}


# -- the server (child process) -----------------------------------------------------------


async def serve(delay: float) -> None:
    """Answer DI posts after ``delay`` seconds; GET /cpu reports this process's CPU time."""
    from aiohttp import web

    async def post(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.Response(body=SUCCESS, content_type="application/json")

    async def cpu(_request: web.Request) -> web.Response:
        return web.Response(text=repr(time.process_time()))

    app = web.Application()
    app.router.add_post(PATH, post)
    app.router.add_get("/cpu", cpu)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


# -- the client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    transport: str
    concurrency: int
    requests: int
    seconds: float
    client_cpu_us: float
    server_cpu_us: float
    failures: int


TRANSPORTS: dict[str, Callable[[int], httpx.AsyncBaseTransport | None]] = {
    "aiohttp (default)": lambda _concurrency: None,
    "httpx AsyncHTTPTransport": lambda concurrency: httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    ),
}


async def server_cpu(base_url: str) -> float:
    async with httpx.AsyncClient() as probe:
        return float((await probe.get(f"{base_url}/cpu")).text)


async def run_one(base_url: str, transport: str, concurrency: int, requests: int) -> Result:
    client = FbrClient(
        base_url=base_url,
        read_timeout=60.0,
        max_connections=concurrency,
        transport=TRANSPORTS[transport](concurrency),
    )
    outcomes: Counter[OutcomeKind] = Counter()

    async def worker(todo: list[int]) -> None:
        while todo:
            todo.pop()
            outcome = await client.post_invoice(INVOICE, token="bench", environment="sandbox")
            outcomes[outcome.kind] += 1

    async with client:
        # Warm-up: open every connection first, so the run measures steady state.
        await asyncio.gather(*(worker([0]) for _ in range(concurrency)))
        outcomes.clear()
        todo = list(range(requests))
        server_before = await server_cpu(base_url)
        cpu_before, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(todo) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu_before
        server_used = await server_cpu(base_url) - server_before
    return Result(
        transport,
        concurrency,
        requests,
        seconds,
        client_cpu / requests * 1e6,
        server_used / requests * 1e6,
        requests - outcomes[OutcomeKind.ACCEPTED],
    )


async def main(arguments: argparse.Namespace) -> None:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--delay", str(arguments.delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        base_url = f"http://127.0.0.1:{int(line.split()[1])}"
        results: list[Result] = []
        for concurrency in arguments.concurrency:
            for transport in TRANSPORTS:
                runs = [
                    await run_one(base_url, transport, concurrency, arguments.requests)
                    for _ in range(arguments.repeat)
                ]
                runs.sort(key=lambda result: result.seconds)
                results.append(runs[len(runs) // 2])  # the median run by wall time
                rates = ", ".join(f"{r.requests / r.seconds:,.0f}" for r in runs)
                print(f"  {transport} @ {concurrency}: runs {rates} req/s", flush=True)
    finally:
        server.terminate()
        server.wait()
    print_table(results, arguments.delay)


def print_table(results: list[Result], delay: float) -> None:
    header = (
        f"{'transport':<26}{'conc':>5}{'reqs':>6}{'wall s':>8}{'req/s':>8}{'ideal':>7}"
        f"{'of ideal':>9}{'client µs/req':>14}{'server µs/req':>14}{'not ok':>7}"
    )
    print(f"\nFbrClient vs a local server answering after {delay * 1000:.0f} ms")
    print(header)
    print("-" * len(header))
    for r in results:
        rate, ideal = r.requests / r.seconds, r.concurrency / delay
        print(
            f"{r.transport:<26}{r.concurrency:>5}{r.requests:>6}{r.seconds:>8.2f}{rate:>8,.0f}"
            f"{ideal:>7,.0f}{rate / ideal:>9.0%}{r.client_cpu_us:>14,.0f}"
            f"{r.server_cpu_us:>14,.0f}{r.failures:>7}"
        )
    rates = {(r.transport, r.concurrency): r.requests / r.seconds for r in results}
    default, stock = TRANSPORTS
    for concurrency in sorted({r.concurrency for r in results}):
        if (default, concurrency) in rates and (stock, concurrency) in rates:
            ratio = rates[default, concurrency] / rates[stock, concurrency]
            print(f"default / httpx pool at concurrency {concurrency}: {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--delay", type=float, default=0.05, help="server delay, seconds")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is shown")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    asyncio.run(serve(parsed.delay) if parsed.serve else main(parsed))
