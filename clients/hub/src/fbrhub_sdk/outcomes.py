"""What became of an invoice: result kinds, final states, and the outcome of submit-and-wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Callable

from fbrhub.v1 import invoice_pb2, invoice_service_pb2
from fbrhub_sdk.errors import FieldViolation, describe_status

__all__ = [
    "FINAL_STATES",
    "OUTCOME_KINDS",
    "InvoiceOutcome",
    "is_invoice_outcome",
    "settle",
]

_READ_CONCURRENCY = 16

OUTCOME_KINDS: frozenset[invoice_pb2.ResultKind.ValueType] = frozenset(
    {
        invoice_pb2.RESULT_KIND_ACCEPTED,
        invoice_pb2.RESULT_KIND_REJECTED,
        invoice_pb2.RESULT_KIND_IN_DOUBT,
        invoice_pb2.RESULT_KIND_RESOLVED_ISSUED,
        invoice_pb2.RESULT_KIND_REQUEUED,
    }
)
"""Result kinds that tell what became of one invoice (not alerts, not heartbeats)."""

FINAL_STATES: frozenset[invoice_pb2.InvoiceState.ValueType] = frozenset(
    {
        invoice_pb2.INVOICE_STATE_ACCEPTED,
        invoice_pb2.INVOICE_STATE_REJECTED_FBR,
        invoice_pb2.INVOICE_STATE_REJECTED_LOCAL,
        invoice_pb2.INVOICE_STATE_IN_DOUBT,
        invoice_pb2.INVOICE_STATE_CANCELLED,
    }
)
"""States in which the hub does nothing more to an invoice on its own.

``REJECTED_FBR`` waits for a corrected retry, ``IN_DOUBT`` for an operator's decision."""


def is_invoice_outcome(message: invoice_service_pb2.StreamResultsResponse) -> bool:
    """True when a StreamResults message reports what became of one invoice.

    False for heartbeats (no ``event``) and for hub alerts (``RESULT_KIND_ALERT``).
    """
    return (
        message.HasField("event")
        and message.event.kind in OUTCOME_KINDS
        and bool(message.event.invoice_id)
    )


@dataclass(frozen=True)
class InvoiceOutcome:
    """One submitted invoice as :meth:`~fbrhub_sdk.HubClient.submit_and_wait` left it.

    Attributes:
        ack: the hub's ack of the submission.
        record: the invoice as last read from the hub; None when it was never stored (a
            rejected ack without ``invoice_id``) or could not be read.
    """

    ack: invoice_service_pb2.InvoiceAck
    record: invoice_pb2.InvoiceRecord | None = None

    @property
    def erp_reference(self) -> str:
        """The ERP's reference of the invoice."""
        return self.ack.erp_reference

    @property
    def invoice_id(self) -> str:
        """The hub's id ("" when the invoice was never stored)."""
        return self.ack.invoice_id

    @property
    def state(self) -> invoice_pb2.InvoiceState.ValueType:
        """The invoice's latest known state."""
        return self.record.state if self.record is not None else self.ack.state

    @property
    def settled(self) -> bool:
        """True when the hub will do nothing more on its own (see :data:`FINAL_STATES`).

        A REJECTED ack is settled: the invoice was not queued.
        """
        if self.ack.outcome == invoice_service_pb2.ACK_OUTCOME_REJECTED:
            return True
        return self.state in FINAL_STATES

    @property
    def accepted(self) -> bool:
        """True when FBR issued a number (state ACCEPTED)."""
        return self.state == invoice_pb2.INVOICE_STATE_ACCEPTED

    @property
    def fbr_invoice_number(self) -> str:
        """FBR's number once accepted, else ``""``."""
        return self.record.fbr_invoice_number if self.record is not None else ""

    @property
    def violations(self) -> list[FieldViolation]:
        """Why it was rejected: the ack's field violations, else the record's."""
        if self.ack.outcome == invoice_service_pb2.ACK_OUTCOME_REJECTED:
            return describe_status(self.ack.error)
        return describe_status(self.record.error) if self.record is not None else []


async def settle(
    outcomes: list[InvoiceOutcome],
    read: Callable[[str], Awaitable[invoice_pb2.InvoiceRecord]],
    timeout: float,
) -> list[InvoiceOutcome]:
    """Read the stored invoices again until each is settled or ``timeout`` seconds pass.

    Each stored invoice is read at least once: a DUPLICATE ack of an accepted invoice is
    settled already, but its FBR number is in the record. Reads start 0.1 s apart and slow
    down to 2 s; at most 16 run at once.

    Args:
        outcomes: one per submitted invoice, updated in place.
        read: reads an invoice by the hub's id.
        timeout: seconds to wait in all.

    Returns:
        ``outcomes``.
    """
    deadline = time.monotonic() + timeout
    interval = 0.1
    limit = asyncio.Semaphore(_READ_CONCURRENCY)

    async def refresh(position: int) -> None:
        async with limit:
            record = await read(outcomes[position].invoice_id)
        outcomes[position] = InvoiceOutcome(outcomes[position].ack, record)

    while True:
        waiting = [
            i
            for i, o in enumerate(outcomes)
            if o.invoice_id and (o.record is None or not o.settled)
        ]
        if not waiting or time.monotonic() >= deadline:
            return outcomes
        await asyncio.gather(*(refresh(i) for i in waiting))
        if all(outcomes[i].settled for i in waiting):
            return outcomes
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 2.0)
