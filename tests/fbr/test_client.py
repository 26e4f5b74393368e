"""The FBR DI client: response classification, the request it sends, and real-socket faults.

Bodies are the PRAL v1.12 samples (docs/fbr-coverage.md §2.6) and the quirks seen in the field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clients.fbr.client import FbrClient
from clients.fbr.responses import (
    DeliveryOutcome,
    OutcomeKind,
    classify_response,
    classify_transport_error,
    parse_lenient_json,
)
from tests.helpers import metric_points

# -- PRAL samples (spec v1.12 §4.1.3-4.1.5, §4.2.3-4.2.4) ------------------------------------

SUCCESS = b"""{
    "invoiceNumber": "7000007DI1747119701593",
    "dated": "2025-05-13 12:01:41",
    "validationResponse": {
        "statusCode": "00", "status": "Valid", "error": "",
        "invoiceStatuses": [
            {"itemSNo": "1", "statusCode": "00", "status": "Valid",
             "invoiceNo": "7000007DI1747119701593-1", "errorCode": "", "error": ""}
        ]
    }
}"""
HEADER_REJECTION = b"""{
    "dated": "2025-05-13 13:09:05",
    "validationResponse": {
        "statusCode": "01", "status": "Invalid", "errorCode": "0052",
        "error": "Provide proper HS Code with invoice no. null", "invoiceStatuses": null
    }
}"""
ITEM_REJECTION = b"""{
    "dated": "2025-05-13 13:10:00",
    "validationResponse": {
        "statusCode": "00", "status": "invalid", "error": "",
        "invoiceStatuses": [
            {"itemSNo": "1", "statusCode": "01", "status": "Invalid", "invoiceNo": null,
             "errorCode": "0046", "error": "Provide rate."}
        ]
    }
}"""
VALIDATE_VALID = b"""{
    "dated": "2025-05-13 13:13:07",
    "validationResponse": {
        "statusCode": "00", "status": "Valid", "errorCode": null, "error": "",
        "invoiceStatuses": [
            {"itemSNo": "1", "statusCode": "00", "status": "Valid", "errorCode": null, "error": ""}
        ]
    }
}"""
VALIDATE_INVALID = b"""{
    "dated": "2025-05-13 13:13:54",
    "validationResponse": {
        "statusCode": "00", "status": "Invalid", "errorCode": null, "error": "",
        "invoiceStatuses": [
            {"itemSNo": "1", "statusCode": "01", "status": "Invalid", "errorCode": "0046",
             "error": "Provide rate."}
        ]
    }
}"""
GATEWAY_PAGE = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
TOKEN = "secret-token-abc"
SELLER_NTN = "8885801"
INVOICE = {
    "invoiceType": "Sale Invoice",
    "invoiceDate": "2025-04-21",
    "sellerNTNCNIC": SELLER_NTN,
    "sellerBusinessName": "Company 8",
    "items": [{"hsCode": "0101.2100", "rate": "18%", "quantity": 1, "valueSalesExcludingST": 1000}],
}


def fault(code: int, message: str, description: str = "") -> bytes:
    body = {"fault": {"code": code, "message": message, "description": description}}
    return json.dumps(body).encode()


# -- classify_response ----------------------------------------------------------------------


def test_spec_success_is_accepted_with_number_and_items() -> None:
    outcome = classify_response(200, {}, SUCCESS)
    assert outcome.kind is OutcomeKind.ACCEPTED
    assert outcome.fbr_invoice_number == "7000007DI1747119701593"
    assert outcome.dated == "2025-05-13 12:01:41"
    assert outcome.item_statuses[0].invoice_no == "7000007DI1747119701593-1"
    assert (outcome.item_statuses[0].item_sno, outcome.error_code) == (1, "")


def test_spec_header_rejection_is_rejected_with_code() -> None:
    outcome = classify_response(200, {}, HEADER_REJECTION)
    assert outcome.kind is OutcomeKind.REJECTED
    assert (outcome.error_code, outcome.fbr_invoice_number) == ("0052", "")
    assert outcome.error_message.startswith("Provide proper HS Code")
    assert outcome.item_statuses == ()


def test_spec_item_rejection_despite_header_00_is_rejected_with_items() -> None:
    outcome = classify_response(200, {}, ITEM_REJECTION)
    assert outcome.kind is OutcomeKind.REJECTED
    assert (outcome.error_code, outcome.error_message) == ("0046", "Provide rate.")
    item = outcome.item_statuses[0]
    assert (item.item_sno, item.status_code, item.invoice_no) == (1, "01", "")


def test_spec_validate_responses() -> None:
    assert classify_response(200, {}, VALIDATE_VALID, validate_only=True).kind is (
        OutcomeKind.ACCEPTED
    )
    invalid = classify_response(200, {}, VALIDATE_INVALID, validate_only=True)
    assert (invalid.kind, invalid.error_code) == (OutcomeKind.REJECTED, "0046")


def test_lenient_parser_drops_trailing_commas_outside_strings_only() -> None:
    body = '\ufeff{"a": "x,}", "b": [1, 2,], "c": {"d": ",]",},}'.encode()
    assert parse_lenient_json(body) == {"a": "x,}", "b": [1, 2], "c": {"d": ",]"}}
    assert parse_lenient_json(GATEWAY_PAGE) is None
    assert parse_lenient_json(b"") is None


def test_trailing_commas_and_numbers_for_strings_still_accept() -> None:
    body = b"""{"invoiceNumber": "7000007DI1747119701593", "dated": null,
        "validationResponse": {"statusCode": 0, "status": "VALID", "error": null,
          "invoiceStatuses": [{"itemSNo": 1, "statusCode": 0, "status": "valid",
            "invoiceNo": 0, "errorCode": null, "error": null,},],},}"""
    outcome = classify_response(200, {}, body)
    assert outcome.kind is OutcomeKind.ACCEPTED
    item = outcome.item_statuses[0]
    assert (item.status_code, item.invoice_no, item.error_code) == ("00", "", "")


def test_numeric_error_code_keeps_its_zero_padding() -> None:
    body = b'{"validationResponse": {"statusCode": 1, "errorCode": 52, "invoiceStatuses": null}}'
    outcome = classify_response(200, {}, body)
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.REJECTED, "0052")


@pytest.mark.parametrize(
    "body",
    [GATEWAY_PAGE, b"", b'{"message": "ok"}', b"[]"],
    ids=["html", "empty", "no-validationResponse", "list"],
)
def test_2xx_without_a_readable_verdict_is_in_doubt(body: bytes) -> None:
    assert classify_response(200, {}, body).kind is OutcomeKind.IN_DOUBT
    # validation issues nothing, so the same reply is merely retryable there
    assert classify_response(200, {}, body, validate_only=True).kind is OutcomeKind.RETRYABLE


@pytest.mark.parametrize(
    "statuses",
    ['"garbage"', '[{"itemSNo": "1"}]', '[{"itemSNo": "1", "statusCode": "01"}]'],
    ids=["not-a-list", "no-status-code", "item-rejected"],
)
def test_a_possibly_issued_number_is_never_dropped(statuses: str) -> None:
    body = (
        '{"invoiceNumber": "7000007DI1747119701593", "validationResponse": '
        f'{{"statusCode": "00", "invoiceStatuses": {statuses}}}}}'
    ).encode()
    outcome = classify_response(200, {}, body)
    assert outcome.kind is OutcomeKind.IN_DOUBT
    assert outcome.fbr_invoice_number == "7000007DI1747119701593"


@pytest.mark.parametrize(
    ("code", "message"), [(900901, "Invalid Credentials"), (900902, "Missing Credentials")]
)
def test_wso2_401_is_retryable_and_names_the_fault(code: int, message: str) -> None:
    outcome = classify_response(401, {"Content-Type": "application/json"}, fault(code, message))
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.detail == f"HTTP 401 gateway fault {code}"
    assert outcome.error_message == message


def test_503_gateway_fault_connecting_to_backend_is_retryable() -> None:
    body = fault(101503, "Runtime Error", "Error connecting to the back end")
    outcome = classify_response(503, {"Retry-After": "5"}, body)
    assert (outcome.kind, outcome.detail) == (
        OutcomeKind.RETRYABLE,
        "HTTP 503 gateway fault 101503",
    )
    assert outcome.retry_after == 5.0


def test_5xx_gateway_fault_after_forwarding_is_in_doubt() -> None:
    # 101504 + protocol state: the gateway timed out waiting for FBR after sending.
    body = fault(101504, "Runtime Error", "Send timeout")
    assert classify_response(504, {}, body).kind is OutcomeKind.IN_DOUBT


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_without_fault_envelope_is_in_doubt(status: int) -> None:
    outcome = classify_response(status, {}, b"Internal Server Error (Contact Administrator)")
    assert outcome.kind is OutcomeKind.IN_DOUBT
    assert outcome.detail == f"HTTP {status} without gateway fault envelope"


def test_5xx_with_an_explicit_di_rejection_is_rejected() -> None:
    assert classify_response(500, {}, HEADER_REJECTION).kind is OutcomeKind.REJECTED


def test_429_retry_after_in_seconds_and_as_http_date() -> None:
    seconds = classify_response(429, {"retry-after": "7"}, b"")
    assert (seconds.kind, seconds.retry_after) == (OutcomeKind.RETRYABLE, 7.0)
    dated = classify_response(
        429,
        {"Date": "Wed, 21 Oct 2026 07:28:00 GMT", "Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT"},
        fault(900802, "Message throttled out"),
    )
    assert (dated.kind, dated.retry_after) == (OutcomeKind.RETRYABLE, 30.0)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, OutcomeKind.REJECTED),
        (413, OutcomeKind.REJECTED),
        (403, OutcomeKind.RETRYABLE),
        (404, OutcomeKind.RETRYABLE),
        (307, OutcomeKind.RETRYABLE),
        (303, OutcomeKind.IN_DOUBT),
    ],
)
def test_other_statuses_without_envelope(status: int, kind: OutcomeKind) -> None:
    assert classify_response(status, {}, b"nope").kind is kind


# -- classify_transport_error ---------------------------------------------------------------


def _mapped(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), OutcomeKind.RETRYABLE),
        (httpx.ConnectTimeout("slow"), OutcomeKind.RETRYABLE),
        (httpx.PoolTimeout("busy"), OutcomeKind.RETRYABLE),
        (httpx.ReadTimeout("slow"), OutcomeKind.IN_DOUBT),
        (httpx.WriteTimeout("slow"), OutcomeKind.IN_DOUBT),
        (httpx.WriteError("reset"), OutcomeKind.IN_DOUBT),
        (httpx.RemoteProtocolError("closed"), OutcomeKind.IN_DOUBT),
        (TimeoutError(), OutcomeKind.IN_DOUBT),
        # httpx-aiohttp maps ServerDisconnectedError to ConnectTimeout: the cause decides
        (
            _mapped(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()),
            OutcomeKind.IN_DOUBT,
        ),
        (
            _mapped(httpx.ConnectTimeout("x"), aiohttp.ConnectionTimeoutError()),
            OutcomeKind.RETRYABLE,
        ),
        (aiohttp.ClientResponseError(None, (), status=400), OutcomeKind.IN_DOUBT),  # type: ignore[arg-type]
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_transport_errors(exc: BaseException, kind: OutcomeKind) -> None:
    outcome = classify_transport_error(exc, request_sent=True)
    assert (outcome.kind, outcome.http_status) == (kind, None)
    assert classify_transport_error(exc, request_sent=False).kind is OutcomeKind.RETRYABLE
    assert classify_transport_error(exc, request_sent=True, validate_only=True).kind is (
        OutcomeKind.RETRYABLE
    )


# -- the client over httpx.MockTransport ----------------------------------------------------


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> FbrClient:
    return FbrClient(base_url="https://fbr.test", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("operation", "environment", "path"),
    [
        ("post", "sandbox", "/di_data/v1/di/postinvoicedata_sb"),
        ("post", "production", "/di_data/v1/di/postinvoicedata"),
        ("validate", "sandbox", "/di_data/v1/di/validateinvoicedata_sb"),
        ("validate", "production", "/di_data/v1/di/validateinvoicedata"),
    ],
)
async def test_request_path_headers_and_body(operation: str, environment: str, path: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=SUCCESS if operation == "post" else VALIDATE_VALID)

    async with mock_client(handler) as client:
        call = client.post_invoice if operation == "post" else client.validate_invoice
        outcome = await call(INVOICE, token=TOKEN, environment=environment, request_id="inv-1")
    assert outcome.kind is OutcomeKind.ACCEPTED
    request = seen[0]
    assert (request.method, request.url.path) == ("POST", path)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Hub-Invoice-Id"] == "inv-1"
    assert json.loads(request.content) == INVOICE


async def test_no_request_id_header_when_none_given() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=SUCCESS)

    async with mock_client(handler) as client:
        await client.post_invoice(INVOICE, token=TOKEN, environment="sandbox")
    assert "X-Hub-Invoice-Id" not in seen[0].headers


async def test_no_cookies_carry_over_between_calls() -> None:
    cookies: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        cookies.append(request.headers.get("Cookie"))
        return httpx.Response(200, headers={"Set-Cookie": "lb=node1; Path=/"}, content=SUCCESS)

    async with mock_client(handler) as client:
        for _ in range(2):
            await client.post_invoice(INVOICE, token=TOKEN, environment="sandbox")
    assert cookies == [None, None]


async def test_programming_errors_raise() -> None:
    async with mock_client(lambda request: httpx.Response(200, content=SUCCESS)) as client:
        with pytest.raises(ValueError, match="environment"):
            await client.post_invoice(INVOICE, token=TOKEN, environment="staging")
    with pytest.raises(ValueError, match="TLS"):
        FbrClient(verify=False)


async def test_transport_failures_become_outcomes() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def hang_up(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with mock_client(refuse) as client:
        outcome = await client.post_invoice(INVOICE, token=TOKEN, environment="sandbox")
        assert outcome.kind is OutcomeKind.RETRYABLE
    async with mock_client(hang_up) as client:
        post = await client.post_invoice(INVOICE, token=TOKEN, environment="sandbox")
        check = await client.validate_invoice(INVOICE, token=TOKEN, environment="sandbox")
    assert (post.kind, check.kind) == (OutcomeKind.IN_DOUBT, OutcomeKind.RETRYABLE)


async def test_span_metric_and_log_follow_the_http_conventions_without_personal_data(
    traced: InMemorySpanExporter,
    metric_reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="clients.fbr.client")
    seen: list[httpx.Request] = []

    def reject(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=ITEM_REJECTION)

    with trace.get_tracer("test").start_as_current_span("attempt") as parent:
        async with mock_client(reject) as client:
            await client.post_invoice(INVOICE, token=TOKEN, environment="sandbox", request_id="i-9")
    (span,) = [s for s in traced.get_finished_spans() if s.name != "attempt"]
    assert span.name == "POST /di_data/v1/di/postinvoicedata_sb"
    assert span.kind is trace.SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": "https://fbr.test/di_data/v1/di/postinvoicedata_sb",
        "url.scheme": "https",
        "url.template": "/di_data/v1/di/postinvoicedata_sb",
        "server.address": "fbr.test",
        "server.port": 443,
        "fbrhub.fbr.endpoint": "di:sandbox",
        "fbrhub.fbr.outcome": "rejected",
        "fbrhub.fbr.error_code": "0046",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert not span.events
    # The request carried the span's context (trace context only, never baggage).
    context = span.get_span_context()
    assert seen[0].headers["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    assert "baggage" not in seen[0].headers
    (record,) = [r for r in caplog.records if r.name == "clients.fbr.client"]
    assert record.__dict__["invoice_id"] == "i-9"
    assert TOKEN not in caplog.text and SELLER_NTN not in caplog.text
    points = [
        p
        for p in metric_points(metric_reader, "http.client.request.duration")
        if p.attributes.get("fbrhub.fbr.outcome") == "rejected"
    ]
    assert points and all(p.attributes["fbrhub.fbr.endpoint"] == "di:sandbox" for p in points)


async def test_a_transport_failure_is_an_error_with_its_class_and_still_measured(
    traced: InMemorySpanExporter, metric_reader: InMemoryMetricReader
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused by 10.0.0.1", request=request)

    async with mock_client(refuse) as client:
        await client.post_invoice(INVOICE, token=TOKEN, environment="production")
    (span,) = traced.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "httpx.ConnectError"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert "refused" not in (span.status.description or "")
    assert "http.response.status_code" not in span.attributes
    failed = [
        p
        for p in metric_points(metric_reader, "http.client.request.duration")
        if p.attributes.get("error.type") == "httpx.ConnectError"
        and p.attributes.get("fbrhub.fbr.endpoint") == "di:production"
    ]
    assert failed and failed[0].attributes["fbrhub.fbr.outcome"] == "retryable"


# -- real sockets: tiny aiohttp servers on 127.0.0.1 ----------------------------------------


@dataclass
class Server:
    base_url: str
    received: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(base_url="")

    async def ok(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=SUCCESS, content_type="application/json")

    async def hang(request: web.Request) -> web.StreamResponse:
        await request.read()
        state.received.set()
        await state.release.wait()
        return web.Response(body=SUCCESS, content_type="application/json")

    async def close_before_answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        state.received.set()
        assert request.transport is not None
        request.transport.close()
        await state.release.wait()
        return web.Response()

    async def close_mid_body(request: web.Request) -> web.StreamResponse:
        await request.read()
        state.received.set()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(SUCCESS)
        await response.prepare(request)
        await response.write(SUCCESS[:20])
        assert request.transport is not None
        request.transport.close()
        await state.release.wait()
        return response

    app = web.Application()
    for name, handler in [
        ("ok", ok),
        ("hang", hang),
        ("close-before", close_before_answer),
        ("close-mid", close_mid_body),
    ]:
        app.router.add_post(f"/{name}/di_data/v1/di/postinvoicedata_sb", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base_url = f"http://127.0.0.1:{port}"
    yield state
    state.release.set()
    await runner.cleanup()


TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport | None]] = {
    "aiohttp": lambda: None,  # the default
    "httpx": lambda: httpx.AsyncHTTPTransport(),
}


def real_client(base_url: str, transport: str, read_timeout: float = 5.0) -> FbrClient:
    return FbrClient(
        base_url=base_url,
        connect_timeout=2.0,
        read_timeout=read_timeout,
        transport=TRANSPORTS[transport](),
    )


async def post(client: FbrClient) -> DeliveryOutcome:
    return await client.post_invoice(INVOICE, token=TOKEN, environment="sandbox")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_real_round_trip_is_accepted(server: Server, transport: str) -> None:
    async with real_client(f"{server.base_url}/ok", transport) as client:
        assert (await post(client)).kind is OutcomeKind.ACCEPTED


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connection_refused_is_retryable(transport: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on once this socket closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with real_client(f"http://127.0.0.1:{port}", transport) as client:
        outcome = await post(client)
    assert outcome.kind is OutcomeKind.RETRYABLE
    assert "before the request was sent" in outcome.detail


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_answer_after_request_read_is_in_doubt(server: Server, transport: str) -> None:
    async with real_client(f"{server.base_url}/hang", transport, read_timeout=0.3) as client:
        outcome = await post(client)
    assert (outcome.kind, outcome.http_status) == (OutcomeKind.IN_DOUBT, None)
    assert "ReadTimeout" in outcome.detail
    assert server.received.is_set()


@pytest.mark.parametrize(
    ("transport", "route", "raised"),
    [
        # httpx-aiohttp re-raises this one as httpx.ConnectTimeout: the cause must win
        ("aiohttp", "close-before", "aiohttp.ServerDisconnectedError"),
        ("aiohttp", "close-mid", "aiohttp.ClientPayloadError"),
        ("httpx", "close-before", "httpx.RemoteProtocolError"),
        ("httpx", "close-mid", "httpx.RemoteProtocolError"),
    ],
)
async def test_connection_closed_mid_response_is_in_doubt(
    server: Server, transport: str, route: str, raised: str
) -> None:
    async with real_client(f"{server.base_url}/{route}", transport) as client:
        outcome = await post(client)
    assert outcome.kind is OutcomeKind.IN_DOUBT
    assert raised in outcome.detail
    assert server.received.is_set()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    command += " -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost"
    arguments = [*command.split(), "-keyout", str(key), "-out", str(cert)]
    subprocess.run(arguments, check=True, capture_output=True)
    return cert, key


async def test_tls_is_verified_by_default_and_a_ca_bundle_path_is_honoured(
    self_signed: tuple[Path, Path],
) -> None:
    async def ok(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=SUCCESS, content_type="application/json")

    app = web.Application()
    app.router.add_post("/di_data/v1/di/postinvoicedata_sb", ok)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    base_url = f"https://localhost:{runner.addresses[0][1]}"
    try:
        async with FbrClient(base_url=base_url) as client:
            refused = await post(client)
        async with FbrClient(base_url=base_url, verify=str(self_signed[0])) as client:
            trusted = await post(client)
    finally:
        await runner.cleanup()
    assert refused.kind is OutcomeKind.RETRYABLE
    assert "CertificateError" in refused.detail
    assert trusted.kind is OutcomeKind.ACCEPTED
