"""What the reliability tests share: an empty PostgreSQL, a tenant, hub settings, DB probes.

The hub under test always runs as a separate process (:func:`server.processes.spawn_hub`), so
it can be SIGKILLed and its memory read; the FBR simulator runs in the test's own event loop on
a real port, so the test can stop it, restart it and ask it what it issued.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from clients.fbr_simulator import FbrSimulator, TokenGrant
from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk import AsyncHubClient, HubApiError
from server.db.engine import Database
from tests.conftest import POSTGRES_URL, SELLER_NTN, SELLER_TOKEN, TABLES, Tenant, make_tenant

NON_TERMINAL = ("QUEUED", "SENDING", "RETRY_WAIT")

# Hub settings for reliability runs: quick polls and backoff, short leases so that the rows
# of a killed worker turn IN_DOUBT within seconds. The lease must exceed the FBR deadline.
FAST_HUB: dict[str, object] = {
    "forwarder_poll_seconds": 0.05,
    "forwarder_lease_seconds": 2,
    "fbr_connect_timeout_seconds": 0.5,
    "fbr_read_timeout_seconds": 0.5,
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.5,
    "results_poll_seconds": 0.1,
    "shutdown_grace_seconds": 2,
    "log_level": "WARNING",
}


def empty_postgres(request: pytest.FixtureRequest) -> str:
    """The migrated test PostgreSQL with every hub table emptied.

    Needs ``FBRHUB_TEST_POSTGRES_URL``: without it the test is skipped locally and reported
    at the end of the run, and a CI run fails at start-up (``tests/conftest.py``).
    """
    if not POSTGRES_URL:
        pytest.skip("FBRHUB_TEST_POSTGRES_URL not set: the PostgreSQL reliability suite")
    url: str = request.getfixturevalue("postgres_migrated")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    engine.dispose()
    return url


def simulator(latency: float = 0.0, seed: int = 1) -> FbrSimulator:
    """An FBR simulator that knows the test seller's sandbox token."""
    return FbrSimulator(
        tokens={SELLER_TOKEN: TokenGrant(SELLER_NTN, "sandbox")}, latency=latency, seed=seed
    )


async def new_tenant(url: str) -> Tenant:
    """The test seller as a tenant of the database at ``url``, with an ERP key."""
    db = Database(url)
    try:
        return await make_tenant(db, SELLER_NTN, SELLER_TOKEN)
    finally:
        await db.dispose()


async def submit(
    address: str,
    api_key: str,
    invoices: Sequence[invoice_pb2.Invoice],
    acks: list[invoice_service_pb2.InvoiceAck],
    *,
    batch_size: int = 50,
) -> bool:
    """Stream ``invoices`` with the SDK, appending each ack to ``acks`` as it arrives.

    Returns:
        True if the stream completed, False if it broke (the hub died): the acks received
        before the break stand.
    """
    try:
        async with AsyncHubClient(address, api_key) as client:
            async for ack in client.submit(invoices, batch_size=batch_size):
                acks.append(ack)
    except HubApiError:
        return False
    return True


async def until(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float, interval: float = 0.05
) -> None:
    """Poll ``check`` until true; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


class Probe:
    """Synchronous, read-only SQL against the database under test (a separate connection)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def scalar(self, sql: str, **params: object) -> int:
        """One integer."""
        with self.engine.connect() as connection:
            return int(connection.scalar(sa.text(sql), params) or 0)

    def rows(self, sql: str, **params: object) -> list[Any]:
        """All rows."""
        with self.engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params))

    def states(self) -> dict[str, int]:
        """Invoices per state."""
        return {
            str(state): int(count)
            for state, count in self.rows("SELECT state, count(*) FROM invoices GROUP BY state")
        }

    def settled(self) -> bool:
        """No invoice is queued, being sent or waiting for a retry."""
        states = self.states()
        return not any(states.get(state) for state in NON_TERMINAL)

    def invoices(self) -> dict[uuid.UUID, tuple[str, str, str | None]]:
        """Every invoice: id -> (erp_reference, state, fbr_invoice_number)."""
        return {
            row[0]: (str(row[1]), str(row[2]), row[3])
            for row in self.rows(
                "SELECT id, erp_reference, state, fbr_invoice_number FROM invoices"
            )
        }
