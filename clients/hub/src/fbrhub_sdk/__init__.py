"""The hub's Python SDK (``fbrhub-sdk``): submit invoices to FBR through the hub, follow outcomes.

Two clients with the same behaviour: :class:`HubClient` for synchronous ERP workers and
:class:`AsyncHubClient` for asyncio code. Both submit any iterable of invoices with the hub's
backpressure and resend what was not acknowledged after a broken stream; follow results from
a saved cursor and reconnect; wait for outcomes (``submit_and_wait``); take per-call
metadata, interceptors, deadlines, TLS and mutual TLS; send the caller's OpenTelemetry
context as ``traceparent``; and raise a typed :class:`HubApiError` per reason family.

Example::

    from fbrhub_sdk import HubClient, FileCursorStore

    with HubClient("127.0.0.1:50051", api_key) as hub:
        for ack in hub.submit(invoices):
            ...
        for message in hub.results(FileCursorStore("results.cursor")):
            ...

The generated messages and enums are in ``fbrhub.v1`` (``invoice_pb2``,
``invoice_service_pb2``, ``error_reason_pb2``...).
"""

from __future__ import annotations

from fbrhub_sdk._submit import MAX_BATCH_SIZE, InvoiceSource
from fbrhub_sdk.aio import AsyncHubClient
from fbrhub_sdk.client import HubClient
from fbrhub_sdk.convert import decimal_text, invoice_from_fbr_json, invoice_to_proto
from fbrhub_sdk.cursors import CursorStore, FileCursorStore, MemoryCursorStore
from fbrhub_sdk.errors import (
    AuthenticationError,
    ConflictError,
    CursorInvalidError,
    DeadlineExceededError,
    ErrorDetails,
    ErrorReason,
    FieldViolation,
    HubApiError,
    InternalError,
    InvalidArgumentError,
    InvoiceInvalidError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ResourceExhaustedError,
    UnavailableError,
    describe_status,
    error_details,
    reason_value,
)
from fbrhub_sdk.outcomes import FINAL_STATES, OUTCOME_KINDS, InvoiceOutcome, is_invoice_outcome
from fbrhub_sdk.retry import RetryPolicy

__version__ = "0.2.0"

__all__ = [
    "FINAL_STATES",
    "MAX_BATCH_SIZE",
    "OUTCOME_KINDS",
    "AsyncHubClient",
    "AuthenticationError",
    "ConflictError",
    "CursorInvalidError",
    "CursorStore",
    "DeadlineExceededError",
    "ErrorDetails",
    "ErrorReason",
    "FieldViolation",
    "FileCursorStore",
    "HubApiError",
    "HubClient",
    "InternalError",
    "InvalidArgumentError",
    "InvoiceInvalidError",
    "InvoiceOutcome",
    "InvoiceSource",
    "MemoryCursorStore",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "UnavailableError",
    "decimal_text",
    "describe_status",
    "error_details",
    "invoice_from_fbr_json",
    "invoice_to_proto",
    "is_invoice_outcome",
    "reason_value",
]
