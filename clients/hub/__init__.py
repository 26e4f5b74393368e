"""The hub's Python SDK: submit invoices, follow results, look invoices up.

Example::

    from clients.hub import HubClient, invoice_to_proto

    async with HubClient("127.0.0.1:50051", api_key) as hub:
        async for ack in hub.submit(invoice_to_proto(inv, ref) for ref, inv in invoices):
            ...
"""

from __future__ import annotations

from clients.hub.client import MAX_BATCH_SIZE, OUTCOME_KINDS, HubClient, is_invoice_outcome
from clients.hub.convert import invoice_to_proto
from clients.hub.errors import (
    ErrorDetails,
    FieldViolation,
    HubApiError,
    describe_status,
    error_details,
)

__all__ = [
    "MAX_BATCH_SIZE",
    "OUTCOME_KINDS",
    "ErrorDetails",
    "FieldViolation",
    "HubApiError",
    "HubClient",
    "describe_status",
    "error_details",
    "invoice_to_proto",
    "is_invoice_outcome",
]
