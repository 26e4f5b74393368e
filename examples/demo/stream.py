"""Streaming the plan to the hub and following the results stream until every outcome is in.

Acks are checked against the plan as they arrive (a broken invoice must be rejected with its
FBR code and field, a resent one acked DUPLICATE); outcomes are the latest result event per
invoice.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from examples.demo.plan import Plan
from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk import AsyncHubClient, HubApiError, describe_status

_REQUEST_PREFIX = re.compile(r"^invoices\[\d+\]\.")
_ITEM_INDEX = re.compile(r"items\[\d+\]")
FINAL_KINDS = frozenset(
    {
        invoice_pb2.RESULT_KIND_ACCEPTED,
        invoice_pb2.RESULT_KIND_REJECTED,
        invoice_pb2.RESULT_KIND_IN_DOUBT,
        invoice_pb2.RESULT_KIND_RESOLVED_ISSUED,
    }
)
"""Result kinds after which an invoice needs nothing more (REQUEUED means: wait on)."""


@dataclass
class Tally:
    """What came back: acks, result events and everything unexpected."""

    acks: int = 0
    queued: set[str] = field(default_factory=set)
    duplicates: int = 0
    rejected_acks: int = 0
    rejected_local: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejection_example: dict[tuple[str, str], str] = field(default_factory=dict)
    outcomes: dict[str, invoice_pb2.ResultEvent] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def by_kind(self, kind: invoice_pb2.ResultKind.ValueType) -> list[invoice_pb2.ResultEvent]:
        """The latest events of each invoice that are of ``kind``."""
        return [e for e in self.outcomes.values() if e.kind == kind]

    def settled(self) -> int:
        """Queued invoices whose latest event is final."""
        return sum(1 for e in self.outcomes.values() if e.kind in FINAL_KINDS)

    def waiting(self) -> int:
        """Queued invoices still without a final outcome."""
        final = {i for i, e in self.outcomes.items() if e.kind in FINAL_KINDS}
        return len(self.queued - final)


def _field(path: str) -> str:
    return _ITEM_INDEX.sub("items[]", _REQUEST_PREFIX.sub("", path))


def record_ack(plan: Plan, tally: Tally, ack: invoice_service_pb2.InvoiceAck) -> None:
    """Count one ack and note anything the plan did not expect."""
    tally.acks += 1
    reference = ack.erp_reference
    if ack.outcome == invoice_service_pb2.ACK_OUTCOME_DUPLICATE:
        tally.duplicates += 1
        if reference not in plan.resent:
            tally.problems.append(f"{reference}: acked DUPLICATE but was sent once")
        return
    if ack.outcome == invoice_service_pb2.ACK_OUTCOME_ACCEPTED:
        tally.queued.add(ack.invoice_id)
        if reference in plan.broken:
            tally.problems.append(f"{reference}: broken on purpose but accepted by the hub")
        return
    tally.rejected_acks += 1
    violations = describe_status(ack.error)
    for violation in violations:
        key = (_field(violation.field), violation.fbr_error_code or violation.reason)
        tally.rejected_local[key] += 1
        tally.rejection_example.setdefault(key, violation.description)
    found = {(v.fbr_error_code, _REQUEST_PREFIX.sub("", v.field)) for v in violations}
    expected = plan.broken.get(reference)
    if expected is None:
        codes = ", ".join(sorted(code for code, _ in found)) or "no violations"
        tally.problems.append(f"{reference}: valid sample rejected by the hub ({codes})")
    elif expected not in found:
        tally.problems.append(f"{reference}: expected FBR {expected[0]} at {expected[1]}")


async def stream_invoices(
    client: AsyncHubClient,
    plan: Plan,
    tally: Tally,
    console: Console,
    timeout: float,
    *,
    channel: str = "DI",
) -> float:
    """Submit the plan and follow results until every queued invoice has a final outcome.

    Returns:
        Seconds until the last ack (the ingest time).
    """
    started = time.monotonic()
    columns = (TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        acks_bar = progress.add_task(f"{channel} acks from the hub", total=len(plan.invoices))
        expected = len(plan.invoices) - len(plan.broken) - len(plan.resent)
        results_bar = progress.add_task(f"{channel} outcomes from FBR", total=expected)
        submitted = asyncio.Event()
        complete = asyncio.Event()

        async def follow() -> None:
            # Heartbeats and hub alerts (circuit open, stuck invoices) are not outcomes.
            async for message in client.stream_outcomes(follow=True):
                tally.outcomes[message.event.invoice_id] = message.event
                progress.update(results_bar, completed=tally.settled())
                if submitted.is_set() and tally.waiting() == 0:
                    complete.set()
                    return

        follower = asyncio.create_task(follow(), name="demo-results")
        waiter = asyncio.create_task(complete.wait(), name="demo-complete")
        try:
            async for ack in client.submit(plan.invoices, batch_size=200, max_in_flight_batches=8):
                record_ack(plan, tally, ack)
                progress.advance(acks_bar)
            ingest_seconds = time.monotonic() - started
            submitted.set()
            progress.update(results_bar, total=len(tally.queued))
            if tally.waiting() == 0:
                complete.set()
            await asyncio.wait({follower, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
            if follower.done() and not follower.cancelled() and follower.exception():
                await follower  # raises the stream's error
        finally:
            for task in (follower, waiter):
                task.cancel()
            await asyncio.gather(follower, waiter, return_exceptions=True)
    if tally.waiting():
        tally.problems.append(
            f"{tally.waiting()} queued {channel} invoices had no outcome after {timeout:.0f} s "
            "(see hub.log in the work dir; rerun with --timeout to wait longer)"
        )
    return ingest_seconds


async def cross_check(client: AsyncHubClient, tally: Tally) -> None:
    """Look the results up again through GetInvoice and ListInvoices; note disagreements."""
    accepted = tally.by_kind(invoice_pb2.RESULT_KIND_ACCEPTED)
    try:
        if accepted:
            record = await client.get_invoice(erp_reference=accepted[0].erp_reference)
            if (
                record.state != invoice_pb2.INVOICE_STATE_ACCEPTED
                or record.fbr_invoice_number != accepted[0].fbr_invoice_number
            ):
                tally.problems.append("GetInvoice disagrees with the results stream")
        listed = 0
        async for page in client.list_invoices(
            page_size=500, states=[invoice_pb2.INVOICE_STATE_ACCEPTED]
        ):
            listed += len(page.invoices)
    except HubApiError as error:
        tally.problems.append(f"looking invoices up failed: {error}")
        return
    if listed != len(accepted):
        tally.problems.append(f"ListInvoices shows {listed} accepted, the stream {len(accepted)}")
