"""The CPU one delivery attempt's telemetry costs, measured in one process.

Runs the forwarder's per-invoice telemetry path N times: the attempt span (linked to an
ingest span), the FBR client's HTTP span, the log line and the metrics, around a real
``FbrClient`` call answered in memory (``httpx.MockTransport``), then flushes the exporters,
and prints the process's CPU time per invoice (every thread's: the batch span processor
encodes and sends in its own). ``off`` installs nothing; ``unsampled`` and ``full`` export
traces and metrics over OTLP/HTTP to ``URL`` with nothing sampled and everything sampled.
The difference to ``off`` is what tracing costs per invoice, without the noise of a shared
machine running a whole hub.

Run: ``python -m bench.tracing_cost off|unsampled|full URL N`` (prints JSON)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
import uuid

import httpx
import orjson

from bench.workload import FBR_TOKEN, SELLER
from clients.fbr.channels import Channel
from clients.fbr.client import FbrClient
from server.access.tenants import TenantProfile
from server.invoices.claims import Claimed
from server.invoices.tracing import attempt_span, producer_span
from server.observability.telemetry import build_telemetry

ANSWER = orjson.dumps(
    {
        "invoiceNumber": "8885801DI1747119701593",
        "dated": "2025-05-13 12:01:41",
        "validationResponse": {
            "statusCode": "00",
            "status": "Valid",
            "error": "",
            "invoiceStatuses": [{"itemSNo": "1", "statusCode": "00", "status": "Valid"}],
        },
    }
)
SAMPLERS = {"unsampled": "always_off", "full": "always_on"}


async def attempts(count: int) -> float:
    """Run ``count`` attempts; the process CPU seconds they took, export included."""
    tenant = TenantProfile(
        uuid.uuid4(), SELLER.ntn_cnic, "Seller", "PUNJAB", "Lahore", "sandbox", FBR_TOKEN
    )
    client = FbrClient(
        base_url="https://fbr.test",
        transport=httpx.MockTransport(lambda _request: httpx.Response(200, content=ANSWER)),
    )
    with producer_span(tenant.id) as producer:
        traceparent = producer.traceparent
    now = dt.datetime.now(dt.UTC)
    started = time.process_time()
    for number in range(count):
        claimed = Claimed(
            uuid.uuid4(), tenant, f"R-{number}", 1, Channel.DI, {}, now, "w", traceparent, now
        )
        with attempt_span(claimed, "di:sandbox") as attempt:
            outcome = await client.post_invoice(
                {}, token=FBR_TOKEN, environment="sandbox", request_id=str(claimed.invoice_id)
            )
            attempt.finish(outcome)
    await client.aclose()
    return time.process_time() - started


def main() -> int:
    """Entry point (see the module docstring)."""
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode != "off":
        os.environ.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=url,
            OTEL_TRACES_SAMPLER=SAMPLERS[mode],
        )
    telemetry = build_telemetry(instance_id="bench")
    telemetry.install()
    cpu = asyncio.run(attempts(count))
    flushed = time.process_time()
    telemetry.shutdown()  # the export of what is still queued counts too
    cpu += time.process_time() - flushed
    print(orjson.dumps({"mode": mode, "cpu_us": cpu / count * 1e6}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
