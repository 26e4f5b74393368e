"""Reliability on PostgreSQL: an FBR outage costs a few attempts, and delivery resumes after it.

The hub runs as its own process; the FBR simulator runs in the test's event loop on a fixed
port. The test stops the simulator (connections refused) while invoices keep arriving, holds
the outage for a stretch, then starts a new simulator on the same port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fbrhub.v1 import invoice_service_pb2
from server.processes import HOST, free_port, spawn_hub
from tests.helpers import proto_invoice
from tests.reliability.harness import (
    FAST_HUB,
    Probe,
    empty_postgres,
    new_tenant,
    simulator,
    submit,
    until,
)

pytestmark = pytest.mark.postgres

BEFORE, DURING = 100, 200
CONCURRENCY = 8
OUTAGE_SECONDS = 5.0
BREAKER_OPEN_SECONDS = 1.0
# With a circuit breaker an outage costs the requests in flight when it starts (at most the
# concurrency), the failures that open the breaker, and about one half-open probe per open
# period. Without one, every queued invoice is retried on its own backoff: hundreds here.
OUTAGE_ATTEMPT_BOUND = CONCURRENCY + 5 + int(2 * OUTAGE_SECONDS / BREAKER_OPEN_SECONDS) + 10


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """The emptied test PostgreSQL (skipped without FBRHUB_TEST_POSTGRES_URL; CI requires it)."""
    return empty_postgres(request)


@pytest.fixture
def probe(postgres_url: str) -> Iterator[Probe]:
    """Read-only SQL on the test database."""
    reader = Probe(postgres_url)
    yield reader
    reader.close()


def _alert_kinds(probe: Probe) -> list[str]:
    kinds = []
    for (data,) in probe.rows("SELECT data FROM result_events WHERE kind = 'ALERT' ORDER BY seq"):
        value: Any = orjson.loads(data) if isinstance(data, str | bytes) else data
        kinds.append(str(value.get("alert", {}).get("kind", "")))
    return kinds


async def test_fbr_outage_costs_few_attempts_and_delivery_resumes(
    postgres_url: str, probe: Probe, tmp_path: Path
) -> None:
    tenant = await new_tenant(postgres_url)
    port = free_port()
    fbr = simulator()
    await fbr.start(HOST, port)
    hub = spawn_hub(
        tmp_path / "hub.log",
        {
            **FAST_HUB,
            "database_url": postgres_url,
            "fbr_base_url": fbr.base_url,
            "forwarder_concurrency": CONCURRENCY,
            "forwarder_lease_seconds": 10,
            "retry_base_seconds": 0.2,
            "retry_max_seconds": 2.0,
            "breaker_failure_threshold": 5,
            "breaker_open_seconds": BREAKER_OPEN_SECONDS,
            "breaker_max_open_seconds": 2.0,
        },
    )
    try:
        await hub.wait_serving()
        acks: list[invoice_service_pb2.InvoiceAck] = []
        invoices = [proto_invoice(f"OUT-{i:04d}") for i in range(BEFORE + DURING)]
        assert await submit(hub.address, tenant.api_key, invoices[:BEFORE], acks)
        await until(lambda: len(fbr.issued) == BEFORE, "delivery before the outage", 60)
        await until(probe.settled, "the first invoices to be recorded", 30)

        await fbr.stop()  # idle, so nothing is cut mid-request: every attempt now is refused
        outage_started = time.monotonic()
        # Ingest keeps accepting while FBR is down.
        assert await submit(hub.address, tenant.api_key, invoices[BEFORE:], acks)
        assert [a.outcome for a in acks] == [invoice_service_pb2.ACK_OUTCOME_ACCEPTED] * len(
            invoices
        )
        await until(
            lambda: (
                probe.scalar("SELECT count(*) FROM delivery_attempts WHERE outcome = 'retryable'")
                > 0
            ),
            "the hub to notice the outage",
            30,
        )
        # The outage lasts a fixed stretch of wall time: that is what is being simulated.
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        during_outage = probe.scalar(
            "SELECT count(*) FROM delivery_attempts WHERE outcome = 'retryable'"
        )

        fbr = simulator()
        await fbr.start(HOST, port)
        await until(lambda: len(fbr.issued) == DURING, "delivery after the outage", 60)
        await until(probe.settled, "every invoice to be recorded", 30)
    finally:
        await hub.stop()
        await fbr.stop()

    print(f"attempts refused during a {OUTAGE_SECONDS:.0f} s outage: {during_outage}")
    assert probe.states() == {"ACCEPTED": BEFORE + DURING}
    assert fbr.duplicates() == {}
    assert during_outage <= OUTAGE_ATTEMPT_BOUND, (
        f"{during_outage} attempts during the outage (bound {OUTAGE_ATTEMPT_BOUND})"
    )
    kinds = _alert_kinds(probe)
    assert "FBR_CIRCUIT_OPEN" in kinds, kinds
    assert "FBR_CIRCUIT_CLOSED" in kinds[kinds.index("FBR_CIRCUIT_OPEN") :], kinds
