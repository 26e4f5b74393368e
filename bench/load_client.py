"""Load generators: a streaming ERP client of the hub, and a unary client of the naive server.

Each runs as its own process (``python -m bench.load_client stream|unary ...``) so that it
never shares an event loop (or the GIL) with the server it measures. Requests are serialized
before the clock starts; the result is one JSON line on stdout.

- ``stream``: one SubmitInvoices stream, batches of 500, at most ``--window`` batches sent
  and not yet acknowledged (like the SDK). Ack latency is per batch: from writing the batch
  to reading its ack (which the hub sends only after the commit).
- ``unary``: ``--concurrency`` workers, each sending one invoice per call and waiting for its
  answer (the naive design, measured generously with many calls in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import orjson

from bench.common import load_workload, request_batches
from fbrhub.v1 import invoice_service_pb2

SUBMIT = "/fbrhub.v1.InvoiceService/SubmitInvoices"
NAIVE_SUBMIT = "/bench.NaiveInvoices/Submit"


def _identity(data: bytes) -> bytes:
    return data


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def stream(address: str, api_key: str, batches: list[bytes], window: int) -> dict[str, Any]:
    """Submit every batch over one stream; return rate, latencies and ack outcomes."""
    outcomes: collections.Counter[invoice_service_pb2.AckOutcome.ValueType] = collections.Counter()
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.stream_stream(
            SUBMIT,
            request_serializer=_identity,
            response_deserializer=invoice_service_pb2.SubmitInvoicesResponse.FromString,
        )
        call = method(metadata=(("authorization", f"Bearer {api_key}"),))
        room = asyncio.Semaphore(window)
        sent_at: collections.deque[float] = collections.deque()

        async def send() -> None:
            for batch in batches:
                await room.acquire()
                sent_at.append(time.perf_counter())
                await call.write(batch)
            await call.done_writing()

        started = time.perf_counter()
        sender = asyncio.create_task(send())
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                break
            assert isinstance(response, invoice_service_pb2.SubmitInvoicesResponse)
            latencies.append(time.perf_counter() - sent_at.popleft())
            room.release()
            for ack in response.acks:
                outcomes[ack.outcome] += 1
        seconds = time.perf_counter() - started
        await sender
    return {
        "invoices": sum(outcomes.values()),
        "seconds": seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "outcomes": {invoice_service_pb2.AckOutcome.Name(k): v for k, v in outcomes.items()},
    }


async def unary(address: str, messages: list[bytes], concurrency: int) -> dict[str, Any]:
    """Send each invoice as one unary call, ``concurrency`` calls in flight."""
    latencies: list[float] = []
    todo = collections.deque(messages)
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_unary(
            NAIVE_SUBMIT, request_serializer=_identity, response_deserializer=_identity
        )

        async def worker() -> None:
            while todo:
                message = todo.popleft()
                began = time.perf_counter()
                await method(message)
                latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "invoices": len(latencies),
        "seconds": seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one load, print its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["stream", "unary"])
    parser.add_argument("--address", required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--workload", type=Path, required=True)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument(
        "--window", type=int, default=8, help="stream: batches in flight (8 x 500 = the hub window)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="unary: calls in flight")
    args = parser.parse_args(argv)
    messages = load_workload(args.workload, args.start, args.count)
    if args.mode == "stream":
        result = asyncio.run(
            stream(args.address, args.api_key, request_batches(messages), args.window)
        )
    else:
        result = asyncio.run(unary(args.address, messages, args.concurrency))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
