"""What can go wrong between the hub and FBR, and the exact bytes the simulator sends for it.

FBR's DI API sits behind a WSO2 API gateway (docs/fbr-coverage.md §2.2, §7.2). Faults
the gateway raises itself come in WSO2's ``{"fault": {...}}`` envelope and provably happen
before FBR saw the request; anything else (a bare 500, a dropped connection, a timeout) leaves
the caller unable to tell whether FBR issued an invoice number. Each :class:`Fault` documents
which of the two it is, so the hub's tests can check that a retry never creates a second
fiscal invoice.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
from aiohttp import web


class Fault(enum.Enum):
    """A scripted misbehaviour for one request (see ``FbrSimulator.script``)."""

    GATEWAY_5XX = "gateway_5xx"
    """HTTP 503 with WSO2 fault 101503 "Error connecting to the back end"; nothing issued."""
    HTTP_500_PLAIN = "http_500_plain"
    """Plain-text HTTP 500 "Contact Administrator"; nothing issued, but the caller cannot know."""
    HTML_200 = "html_200"
    """HTTP 200 carrying an HTML gateway page instead of JSON; nothing issued."""
    TOO_MANY_REQUESTS = "too_many_requests"
    """HTTP 429 with ``Retry-After`` (1 s unless the plan says otherwise) and WSO2 throttling
    fault 900802; nothing issued."""
    ACCEPT_THEN_HANG = "accept_then_hang"
    """The invoice is processed (a number issued if valid), then no answer for ``hang_seconds``."""
    ACCEPT_THEN_DROP = "accept_then_drop"
    """The invoice is processed (a number issued if valid), then the connection is closed."""
    ACCEPT_THEN_500 = "accept_then_500"
    """The invoice is processed (a number issued if valid), then a plain HTTP 500 is sent."""
    HANG = "hang"
    """The request is read, then neither processed nor answered for ``hang_seconds``, then the
    connection is closed: a read timeout at the caller; nothing issued, but it cannot know."""
    DROP = "drop"
    """The connection is closed before the request is processed; nothing issued, but the caller
    cannot know (also what a request on an open connection meets in a refusing outage)."""
    TRAILING_COMMA = "trailing_comma"
    """The normal answer, written like the sandbox sometimes does: trailing commas before
    ``}``/``]`` and ``itemSNo`` as a number rather than a string."""

    @property
    def before_processing(self) -> bool:
        """Whether the fault answers instead of FBR, without looking at the invoice."""
        return self in _BEFORE_PROCESSING


_BEFORE_PROCESSING = frozenset(
    {
        Fault.GATEWAY_5XX,
        Fault.HTTP_500_PLAIN,
        Fault.HTML_200,
        Fault.TOO_MANY_REQUESTS,
        Fault.HANG,
        Fault.DROP,
    }
)
# Before-processing faults answered by closing the connection, not by a response.
WITHOUT_RESPONSE = frozenset({Fault.HANG, Fault.DROP})

_MISSING_CREDENTIALS = orjson.dumps(
    {
        "fault": {
            "code": 900902,
            "message": "Missing Credentials",
            "description": "Invalid Credentials. Make sure your API invocation call has a header: "
            "'Authorization : Bearer ACCESS_TOKEN'",
        }
    }
)
_INVALID_CREDENTIALS = orjson.dumps(
    {
        "fault": {
            "code": 900901,
            "message": "Invalid Credentials",
            "description": "Access failure for API: /di_data/v1, version: v1 status: (900901) - "
            "Invalid Credentials. Make sure you have provided the correct security credentials",
        }
    }
)
_BACKEND_UNREACHABLE = orjson.dumps(
    {
        "fault": {
            "code": 101503,
            "type": "Status report",
            "message": "Runtime Error",
            "description": "Error connecting to the back end",
        }
    }
)
_THROTTLED = orjson.dumps(
    {
        "fault": {
            "code": 900802,
            "message": "Message throttled out",
            "description": "You have exceeded your quota",
        }
    }
)
_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    "request. Please try again later.</p></body></html>"
)
_JSON = "application/json"


def missing_credentials() -> web.Response:
    """WSO2's answer to a request without a bearer token."""
    return web.Response(status=401, body=_MISSING_CREDENTIALS, content_type=_JSON)


def invalid_credentials() -> web.Response:
    """WSO2's answer to an unknown token, or one for the other environment [FAQ Q41]."""
    return web.Response(status=401, body=_INVALID_CREDENTIALS, content_type=_JSON)


def contact_administrator() -> web.Response:
    """FBR's documented bare HTTP 500 [SPEC §4.1.6]."""
    return web.Response(status=500, text="Contact Administrator", content_type="text/plain")


def fault_response(fault: Fault, retry_after_seconds: int = 1) -> web.Response:
    """The response for a fault that answers before the invoice is processed.

    Raises:
        ValueError: for a fault that answers after processing, or without a response.
    """
    if fault is Fault.GATEWAY_5XX:
        return web.Response(status=503, body=_BACKEND_UNREACHABLE, content_type=_JSON)
    if fault is Fault.TOO_MANY_REQUESTS:
        return web.Response(
            status=429,
            body=_THROTTLED,
            content_type=_JSON,
            headers={"Retry-After": str(retry_after_seconds)},
        )
    if fault is Fault.HTML_200:
        return web.Response(status=200, text=_HTML_PAGE, content_type="text/html")
    if fault is Fault.HTTP_500_PLAIN:
        return contact_administrator()
    raise ValueError(f"{fault} answers after processing or without a response")


def quirky_json(value: Any) -> str:
    """JSON with a trailing comma after every member and element, as the sandbox sometimes sends."""
    if isinstance(value, dict):
        return "{" + "".join(f"{quirky_json(k)}:{quirky_json(v)}," for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + "".join(f"{quirky_json(element)}," for element in value) + "]"
    return orjson.dumps(value).decode()
