"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import re
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from clients.fbr.payload import NormalisedInvoice
from clients.fbr.samples import SellerInfo, scenario_invoice
from fbrhub.v1 import invoice_pb2, invoice_service_pb2, invoice_service_pb2_grpc
from server.api.convert.invoices import invoice_to_proto
from server.app import Hub
from server.invoices.model import SubmittedInvoice
from tests.conftest import Tenant

PKT = dt.timezone(dt.timedelta(hours=5))


def today_pk() -> dt.date:
    """Today's date in Pakistan."""
    return dt.datetime.now(PKT).date()


def sample(
    reference: str, *, scenario: str = "SN002", ntn: str = "8885801", seed: int = 0
) -> NormalisedInvoice:
    """A valid normalised invoice for a test seller."""
    seller = SellerInfo(ntn, f"Seller {ntn}", "PUNJAB", "1 Test Road, Lahore")
    return scenario_invoice(
        scenario,
        seller=seller,
        erp_reference=reference,
        invoice_date=today_pk() - dt.timedelta(days=1),
        rng=random.Random(f"{reference}/{seed}"),
    )


def submitted(reference: str, **kwargs: object) -> SubmittedInvoice:
    """A valid invoice as the domain receives it (``Ingestor.submit``)."""
    return SubmittedInvoice.from_normalised(sample(reference, **kwargs))  # type: ignore[arg-type]


def to_proto(invoice: NormalisedInvoice) -> invoice_pb2.Invoice:
    """A normalised invoice as the protobuf an ERP sends."""
    return invoice_to_proto(SubmittedInvoice.from_normalised(invoice))


def proto_invoice(reference: str, **kwargs: object) -> invoice_pb2.Invoice:
    """A valid protobuf invoice."""
    return to_proto(sample(reference, **kwargs))  # type: ignore[arg-type]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, interval: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds.

    Used to wait for the asynchronous forwarder to reach a state: the condition is the
    synchronisation, the interval only bounds how often the database is asked.
    """
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)


async def stop_monitor(hub: Hub) -> None:
    """Stop the hub's queue monitor and wait until it has handed over the lead."""
    assert hub.monitor is not None
    hub.monitor.stop()
    await next(task for task in hub.tasks if task.get_name() == "queue-monitor")


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """Every data point of the metric ``name`` collected now (cumulative since start)."""
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


FBR_NUMBER = re.compile(r"^\d{7}DI\d{13}$")


def violations(status: status_pb2.Status) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The field violations packed in a status."""
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(bad.field_violations)
    return found


def error_reason(status: status_pb2.Status) -> str:
    """The ErrorInfo reason of a status."""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


async def submit(
    stub: invoice_service_pb2_grpc.InvoiceServiceStub,
    tenant: Tenant,
    *batches: list[invoice_pb2.Invoice],
) -> list[invoice_service_pb2.SubmitInvoicesResponse]:
    """Send batches on one stream and collect the responses."""

    async def requests() -> AsyncIterator[invoice_service_pb2.SubmitInvoicesRequest]:
        for batch in batches:
            yield invoice_service_pb2.SubmitInvoicesRequest(invoices=batch)

    call = stub.SubmitInvoices(requests(), metadata=tenant.metadata)
    return [response async for response in call]


async def results_until(
    stub: invoice_service_pb2_grpc.InvoiceServiceStub,
    tenant: Tenant,
    count: int,
    cursor: str = "",
    *,
    include_alerts: bool = False,
) -> list[invoice_service_pb2.StreamResultsResponse]:
    """Follow the results stream until ``count`` events arrived.

    Heartbeats are skipped, and so are queue alerts unless asked for: the hub's monitor may
    raise one at any moment, which would make exact event sequences racy.
    """
    call = stub.StreamResults(
        invoice_service_pb2.StreamResultsRequest(cursor=cursor, follow=True),
        metadata=tenant.metadata,
    )
    events = []
    async with asyncio.timeout(30):
        async for message in call:
            alert = message.event.kind == invoice_pb2.RESULT_KIND_ALERT
            if message.HasField("event") and (include_alerts or not alert):
                events.append(message)
                if len(events) == count:
                    break
    call.cancel()
    return events


def png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Decode a greyscale or palette PNG (bit depth 1-8, filters 0-4) to 8-bit luminance."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header, palette = 8, [], b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = data
        elif kind == b"PLTE":
            palette = data
        elif kind == b"IDAT":
            chunks.append(data)
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert colour in (0, 3) and depth in (1, 2, 4, 8)
    raw = zlib.decompress(b"".join(chunks))
    stride = (width * depth + 7) // 8
    rows, previous, at = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[at], bytearray(raw[at + 1 : at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            left = line[i - 1] if i else 0
            up, corner = previous[i], previous[i - 1] if i else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (
                    line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)
                ) & 0xFF
        rows.append(bytes(line))
        previous = line
    pixels = bytearray()
    for line in rows:
        for x in range(width):
            bit = (line[x * depth // 8] >> (8 - depth - (x * depth) % 8)) & ((1 << depth) - 1)
            if colour == 3:
                pixels.append(palette[bit * 3])
            else:
                pixels.append(bit * 255 // ((1 << depth) - 1))
    return width, height, bytes(pixels)


def missing(what: str, how: str) -> None:
    """Skip (or, under CI, fail) because ``what`` is not installed; ``how`` installs it."""
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {message}")
    pytest.skip(message)
