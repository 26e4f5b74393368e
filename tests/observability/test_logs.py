"""JSON log lines: millisecond UTC times, the trace of the request or attempt, ids as fields."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select, update

from clients.fbr_simulator import Fault, FbrSimulator
from fbrhub.v1 import invoice_service_pb2, invoice_service_pb2_grpc
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice
from server.observability.logs import JsonFormatter, TextFormatter, inject_trace_context
from tests.conftest import Tenant
from tests.helpers import proto_invoice, results_until, submit
from tests.observability.test_traces import erp_trace

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


class JsonLog:
    """What the hub logged (DEBUG and up) through the JSON formatter."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_log() -> Iterator[JsonLog]:
    """Capture every line the hub logs during the test as JSON."""
    inject_trace_context()
    log = JsonLog()
    handler = logging.StreamHandler(log.stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("server", "clients")}
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield log
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def test_lines_inside_requests_and_attempts_carry_their_trace_and_ids(
    invoices: invoice_service_pb2_grpc.InvoiceServiceStub,
    simulator: FbrSimulator,
    tenant: Tenant,
    db: Database,
    traced: InMemorySpanExporter,
    json_log: JsonLog,  # last: capture starts once the hub is up
) -> None:
    simulator.script(Fault.HTTP_500_PLAIN)  # the first attempt ends in doubt: a WARNING
    await submit(invoices, tenant, [proto_invoice("LOG-1"), proto_invoice("LOG-2")])
    await results_until(invoices, tenant, 2)
    async with db.write() as session:
        attempts = {
            str(row.invoice_id): row.trace_id
            for row in await session.scalars(select(DeliveryAttempt))
        }
        # A corrupt row makes GetInvoice fail unexpectedly: an ERROR inside the request.
        broken = (await session.scalars(select(Invoice.id).limit(1))).one()
        await session.execute(
            update(Invoice).where(Invoice.id == broken).values(payload={"items": 5})
        )
    erp = erp_trace()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await invoices.GetInvoice(
            invoice_service_pb2.GetInvoiceRequest(invoice_id=str(broken)),
            metadata=erp.metadata(tenant),
        )
    assert failed.value.code() is grpc.StatusCode.INTERNAL

    lines = json_log.lines()
    assert lines and all(TIME.match(line["time"]) for line in lines)
    outcomes = [line for line in lines if line["logger"] == "server.invoices.tracing"]
    assert sorted(line["outcome"] for line in outcomes) == ["accepted", "in_doubt"]
    for line in outcomes:
        assert line["trace_id"] == attempts[line["invoice_id"]]
        assert line["tenant_id"] == str(tenant.id)
        assert line["attempt"] == 1 and line["endpoint"] == "di:sandbox"
        assert line["level"] == ("DEBUG" if line["outcome"] == "accepted" else "WARNING")
        assert line["invoice_id"] not in line["message"]  # ids are fields, not text
    client = [line for line in lines if line["logger"] == "clients.fbr.client"]
    assert {line["trace_id"] for line in client} == set(attempts.values())
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["logger"] == "server.api.interceptor"
    assert error["trace_id"] == erp.hex and error["trace_sampled"] is True
    assert error["rpc_method"] == "fbrhub.v1.InvoiceService/GetInvoice"
    assert error["exception"]["type"] == "TypeError"
    # Everything the hub logged here happened inside a request or an attempt: all name it.
    assert all("trace_id" in line and "span_id" in line for line in lines)


def test_text_lines_end_with_the_ids_and_the_trace() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "FBR answered", None, None)
    record.__dict__.update(invoice_id="i-1", attempt=2, otelTraceID="ab" * 16)
    line = TextFormatter().format(record)
    assert line.endswith(f"FBR answered [invoice_id=i-1 attempt=2 trace_id={'ab' * 16}]")
    assert re.match(r"^\d\d:\d\d:\d\d\.\d{3} INFO x: ", line)


def test_only_chosen_fields_reach_a_json_line() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.__dict__.update(invoice_id="i-1", buyer_name="Someone Personal")
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world" and line["invoice_id"] == "i-1"
    assert "buyer_name" not in line and "trace_id" not in line
