"""The FBR DI client: post or validate one invoice, and always say what came of it.

One :class:`FbrClient` per process holds one long-lived httpx transport and sends
``httpx.Request`` objects through it. The default transport is httpx-aiohttp's
``AiohttpTransport``, because httpx's own pool spends CPU that grows with the pool size and
collapses at 64+ concurrent requests (docs/benchmarks.md); any httpx transport can
be passed instead (``httpx.MockTransport`` in unit tests, the stock pool in benchmarks).

Every call returns a :class:`~clients.fbr.responses.DeliveryOutcome`; HTTP and transport
problems never raise. Classification lives in :mod:`clients.fbr.responses`. Nothing personal
(NTN/CNIC, names, tokens, bodies) reaches logs, span attributes or exception messages.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, Final

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from clients.fbr.pos.responses import classify_pos_response
from clients.fbr.responses import (
    DeliveryOutcome,
    classify_response,
    classify_transport_error,
)
from clients.fbr.telemetry import endpoint_name, fbr_call

__all__ = ["DI_PATHS", "POS_URLS", "FbrClient"]

_Classifier = Callable[[int, Mapping[str, str], bytes, bool], DeliveryOutcome]

# Post and validate have separate sandbox (``_sb``) paths (docs/fbr-coverage.md §2.1).
DI_PATHS: Final[Mapping[tuple[str, str], str]] = {
    ("post", "sandbox"): "/di_data/v1/di/postinvoicedata_sb",
    ("post", "production"): "/di_data/v1/di/postinvoicedata",
    ("validate", "sandbox"): "/di_data/v1/di/validateinvoicedata_sb",
    ("validate", "production"): "/di_data/v1/di/validateinvoicedata",
}

# The IMS cloud endpoints live on two different hosts (docs/fbr-coverage.md §6.1).
POS_PATHS: Final[Mapping[str, str]] = {
    "sandbox": "/FBR/v1/api/Live/PostData",
    "production": "/imsp/v1/api/Live/PostData",
}
POS_URLS: Final[Mapping[str, str]] = {
    "sandbox": "https://esp.fbr.gov.pk:8244" + POS_PATHS["sandbox"],
    "production": "https://gw.fbr.gov.pk" + POS_PATHS["production"],
}

# FBR replies are a few hundred bytes; a cap keeps a misbehaving gateway from filling memory.
_MAX_BODY_BYTES = 1 << 20
# How long an idle pooled connection is kept. Short, so that we close it before the gateway
# does: a POST on a connection the far end has just closed can only end IN_DOUBT.
_KEEPALIVE_SECONDS = 5.0

# Transport-level failures that become outcomes; anything else is a programming error.
_TRANSPORT_ERRORS = (httpx.RequestError, aiohttp.ClientError, OSError, TimeoutError)


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    if not isinstance(verify, str):  # True: verify=False was refused by the caller
        return httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def _aiohttp_transport(ssl_context: ssl.SSLContext, max_connections: int) -> AiohttpTransport:
    def session() -> aiohttp.ClientSession:
        # Built by the transport on first use, inside the running event loop.
        connector = aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=_KEEPALIVE_SECONDS, ssl=ssl_context
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    return AiohttpTransport(verify=ssl_context, client=session)


class RequestNotSent(ValueError):
    """The request could not be made, so nothing was sent (a body that is not JSON, an
    unknown environment). Its message names no value from the body."""


class FbrClient:
    """Posts and validates DI invoices over one pooled HTTP client.

    Args:
        base_url: gateway root; the DI paths are appended (a path prefix is kept).
        connect_timeout: seconds to open a TCP/TLS connection.
        read_timeout: seconds to wait for response data; also the write timeout.
        max_connections: pool size, which should be at least the caller's concurrency.
        verify: ``True`` for the default CA bundle (certifi, or ``SSL_CERT_FILE``), or the
            path of a CA bundle file (or of a directory prepared with ``openssl rehash``).
            ``False`` is refused: TLS verification toward FBR is always on.
        transport: an httpx transport to use instead of the aiohttp-backed default.
        pos_base_url: root for the IMS (POS) paths in both environments, e.g. the
            simulator's URL; None for FBR's own hosts (``POS_URLS``).

    Timeouts: waiting for a free pooled connection is bounded by ``connect + read``, and
    the whole call by the sum of every phase, which also bounds a server that trickles its
    answer (aiohttp's read timeout restarts on each chunk) or a stalled write (aiohttp has
    no write timeout).
    """

    def __init__(
        self,
        *,
        base_url: str = "https://gw.fbr.gov.pk",
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_connections: int = 64,
        verify: bool | str = True,
        transport: httpx.AsyncBaseTransport | None = None,
        pos_base_url: str | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        pool_timeout = connect_timeout + read_timeout
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=pool_timeout
        )
        self._deadline = connect_timeout + 2 * read_timeout + pool_timeout
        if verify is False:  # whatever the transport
            raise ValueError("TLS verification toward FBR cannot be disabled")
        if transport is None:
            transport = _aiohttp_transport(_ssl_context(verify), max_connections)
        # Requests go straight to the transport (httpx's transport API): no cookies, so no
        # state crosses tenants; no redirects, so a POST is never replayed; and none of
        # AsyncClient's per-request auth/redirect/cookie machinery, which cost about a third
        # of this client's CPU per call (bench/).
        self._transport = transport
        root = base_url.rstrip("/")
        self._urls = {key: httpx.URL(root + path) for key, path in DI_PATHS.items()}
        for environment, url in POS_URLS.items():
            if pos_base_url is not None:
                url = pos_base_url.rstrip("/") + POS_PATHS[environment]
            self._urls["pos", environment] = httpx.URL(url)
        self._timeouts = {"timeout": timeout.as_dict()}

    @property
    def deadline_seconds(self) -> float:
        """The longest any one call can take; a lease on a sending invoice must exceed it."""
        return self._deadline

    async def post_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome:
        """Post one invoice to ``postinvoicedata`` (FBR issues a number if it is valid).

        Args:
            body: the DI request body (``clients.fbr.payload.to_fbr_json``).
            token: the seller's PRAL security token for ``environment``.
            environment: ``"sandbox"`` or ``"production"``.
            request_id: the hub's invoice id, sent as ``X-Hub-Invoice-Id`` (the simulator
                counts issued numbers by it; FBR ignores it).

        Returns:
            The classified outcome; ACCEPTED carries the FBR invoice number.

        Raises:
            ValueError: ``environment`` is unknown.
            TypeError: ``body`` cannot be encoded as JSON.
        """
        return await self._call("post", body, token, environment, request_id)

    async def validate_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome:
        """Dry-run one invoice on ``validateinvoicedata``: ACCEPTED means "valid".

        No number is ever issued, so an outcome that would be IN_DOUBT for a post is
        RETRYABLE here. Arguments and errors are those of :meth:`post_invoice`.
        """
        return await self._call("validate", body, token, environment, request_id)

    async def post_pos_invoice(
        self, body: Mapping[str, Any], *, token: str, environment: str, request_id: str = ""
    ) -> DeliveryOutcome:
        """Post one IMS (POS) invoice to ``Live/PostData`` (FBR issues a fiscal number).

        Args:
            body: the IMS request body (``clients.fbr.pos.payload.to_ims_json``).
            token: the POS channel's bearer token for ``environment``.
            environment: ``"sandbox"`` or ``"production"``.
            request_id: the hub's invoice id, sent as ``X-Hub-Invoice-Id``.

        Returns:
            The classified outcome (:func:`clients.fbr.pos.responses.classify_pos_response`);
            ACCEPTED carries the fiscal number.

        Raises:
            ValueError: ``environment`` is unknown.
        """
        return await self._call("pos", body, token, environment, request_id)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._transport.aclose()

    async def __aenter__(self) -> FbrClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(
        self,
        operation: str,
        body: Mapping[str, Any],
        token: str,
        environment: str,
        request_id: str,
    ) -> DeliveryOutcome:
        url = self._urls.get((operation, environment))
        if url is None:
            raise RequestNotSent(f"unknown FBR environment {environment!r}")
        validate_only = operation == "validate"
        headers = {
            "Accept": "application/json",  # so the WSO2 gateway sends JSON faults
            "Authorization": f"Bearer {token.strip()}",
            "Content-Type": "application/json",
            "User-Agent": "fbrhub",
        }
        if request_id:
            headers["X-Hub-Invoice-Id"] = request_id
        try:
            content = orjson.dumps(body if isinstance(body, dict) else dict(body))
        except (TypeError, orjson.JSONEncodeError):
            raise RequestNotSent("the request body cannot be serialised as JSON") from None
        request = httpx.Request(
            "POST", url, headers=headers, content=content, extensions=self._timeouts
        )
        with fbr_call(request, endpoint_name(operation, environment)) as call:
            classify = _classify_pos if operation == "pos" else _classify_di
            outcome, error_type, response = await self._exchange(request, validate_only, classify)
            call.finish(
                outcome,
                error_type=error_type,
                http_version=response.http_version if response is not None else None,
                operation=operation,
                request_id=request_id,
            )
        return outcome

    async def _exchange(
        self, request: httpx.Request, validate_only: bool, classify: _Classifier
    ) -> tuple[DeliveryOutcome, str | None, httpx.Response | None]:
        """Send and classify; also the transport error's class (if any) and the response."""
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._transport.handle_async_request(request)
                try:
                    body = await _read_capped(response)
                finally:
                    await response.aclose()
        except _TRANSPORT_ERRORS as exc:
            error_type = _qualified_name(type(exc))
            if response is not None and 400 <= response.status_code < 500:
                # A 4xx is a refusal whatever its body: judge it on the status alone.
                outcome = classify(response.status_code, response.headers, b"", validate_only)
                return outcome, error_type, response
            outcome = classify_transport_error(exc, request_sent=True, validate_only=validate_only)
            status = response.status_code if response is not None else None
            return replace(outcome, http_status=status), error_type, response
        return classify(response.status_code, response.headers, body, validate_only), None, response


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _classify_di(
    status: int, headers: Mapping[str, str], body: bytes, validate_only: bool
) -> DeliveryOutcome:
    return classify_response(status, headers, body, validate_only=validate_only)


def _classify_pos(
    status: int, headers: Mapping[str, str], body: bytes, validate_only: bool
) -> DeliveryOutcome:
    del validate_only  # the POS channel has no dry run
    return classify_pos_response(status, headers, body)


async def _read_capped(response: httpx.Response) -> bytes:
    # Past the cap the body is cut short; it then fails to parse, and the outcome says so.
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_BODY_BYTES:
            break
    return b"".join(chunks)
