"""What an FBR DI call came to: parse the reply leniently and classify it (no I/O here).

Every call ends in one :class:`OutcomeKind`. The rule behind the table: never a second
fiscal invoice, so only a failure that provably happened before FBR saw the request is
RETRYABLE; anything FBR may have processed is IN_DOUBT; REJECTED and ACCEPTED need FBR's (or
HTTP's) explicit word. Facts and reasons: docs/fbr-coverage.md §2.2, §2.6 and §7.

| Response | Outcome | Why |
|---|---|---|
| 2xx, number set, every item ``00``, header not rejecting | ACCEPTED | FBR's success test |
| (no items listed: header ``00`` needed) | | |
| 2xx, no number, header ``01`` / errorCode / "invalid" | REJECTED | header-level rejection |
| 2xx, no number, an item not ``00`` | REJECTED | item-level; items kept |
| 2xx, number set but something says invalid, or the | IN_DOUBT | a number may exist: keep it |
| item statuses are unreadable | | in ``fbr_invoice_number`` |
| 2xx, no number and no rejection | IN_DOUBT | unexplained |
| 2xx, HTML / not JSON / no ``validationResponse`` | IN_DOUBT | may hide a processed call |
| 307, 308 | RETRYABLE | "repeat the request": unserved |
| other 3xx | IN_DOUBT | 303 follows a processed POST |
| 401 (WSO2 900901 / 900902) | RETRYABLE | token checked before routing |
| 429 | RETRYABLE | throttled; ``retry_after`` set |
| other 4xx with a WSO2 fault envelope | RETRYABLE | the gateway refused it |
| 403, 404, 405, 408, 425 without an envelope | RETRYABLE | not processed; channel or |
| | | configuration, not the invoice |
| other 4xx without an envelope (400, 413, 422, ...) | REJECTED | same bytes cannot succeed |
| non-2xx, DI body with a rejection and no number | REJECTED | FBR's own verdict |
| non-2xx, DI body with an ``invoiceNumber`` | IN_DOUBT | never drop a possible number |
| 5xx, fault 9xxxxx / 700700 (auth, throttling), 303000- | RETRYABLE | decided in the gateway |
| 303002 (endpoint suspended), 101503 "Error connecting" | | before it calls FBR |
| 5xx, any other fault (101504, 101505, 101507, ...) | IN_DOUBT | WSO2 adds the protocol state: |
| | | 101504 + 3 = sent, then timeout |
| 5xx without an envelope ("Contact Administrator", 502) | IN_DOUBT | FBR may have processed it |
| ``validate_only``: anything IN_DOUBT | RETRYABLE | validation issues nothing |

Transport errors (:func:`classify_transport_error`): connect refused, DNS, TLS handshake,
connect timeout and pool timeout are RETRYABLE (nothing was written); read timeout, write
error or timeout, a connection closed mid-exchange and a malformed response are IN_DOUBT.
The httpx-aiohttp transport maps aiohttp's ``ServerDisconnectedError`` and every other
``ClientConnectionError`` to ``httpx.ConnectTimeout``, so the aiohttp cause is judged first.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import httpx
import orjson

# Only commas outside strings: the string alternative consumes quoted text first.
_TRAILING_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(?=\s*[}\]])', re.DOTALL)
_MESSAGE_LIMIT = 300


def parse_lenient_json(body: bytes | str) -> Any:
    """Parse an FBR body, tolerating a BOM and trailing commas before ``}`` or ``]``.

    Returns:
        The decoded value, or ``None`` when the body is empty or not JSON at all (for example
        an HTML gateway page). A literal ``null`` also gives ``None``.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = text.lstrip("\ufeff").strip()
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        cleaned = _TRAILING_COMMA.sub(lambda match: match.group(1) or "", text)
    try:
        # The stdlib parser (slower, rarely needed) also takes integers beyond 64 bits.
        return json.loads(cleaned)
    except ValueError:
        return None


@dataclass(frozen=True)
class ItemStatus:
    """FBR's verdict on one invoice line (``invoiceStatuses[]``)."""

    item_sno: int
    status_code: str
    status: str
    invoice_no: str
    error_code: str
    error: str


class OutcomeKind(enum.Enum):
    """What the hub may do next with the invoice."""

    ACCEPTED = "accepted"  # FBR issued a number (or, for validate-only: the invoice is valid)
    REJECTED = "rejected"  # FBR (or HTTP) said no; no number was issued
    RETRYABLE = "retryable"  # provably not seen by FBR; safe to send again
    IN_DOUBT = "in_doubt"  # FBR may have issued a number; never resend automatically


@dataclass(frozen=True)
class DeliveryOutcome:
    """The classified result of one FBR call.

    Attributes:
        kind: what happened, see :class:`OutcomeKind`.
        http_status: the HTTP status, or ``None`` when no response arrived.
        fbr_invoice_number: the FBR number; also kept on IN_DOUBT when one was seen.
        dated: FBR's ``dated`` value, opaque (docs/fbr-coverage.md §2.7).
        item_statuses: per-line verdicts.
        error_code: header-level FBR code, or the first failing item's code.
        error_message: FBR's message for that code, or a plain explanation.
        detail: short operator text without personal data.
        retry_after: seconds FBR asked us to wait, when it said so.
    """

    kind: OutcomeKind
    http_status: int | None
    fbr_invoice_number: str = ""
    dated: str = ""
    item_statuses: tuple[ItemStatus, ...] = ()
    error_code: str = ""
    error_message: str = ""
    detail: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class _Fault:
    code: str
    message: str
    description: str


# -- field helpers ------------------------------------------------------------------------


def _lower_keys(value: Any) -> dict[str, Any] | None:
    # Keys are matched case- and space-insensitively: FBR's own samples are not consistent.
    if not isinstance(value, dict):
        return None
    return {str(key).strip().lower(): item for key, item in value.items()}


def _text(value: Any) -> str:
    if isinstance(value, str):  # the common case first: this runs ~40 times per response
        return value.strip()
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _code(value: Any, width: int) -> str:
    # FBR sometimes sends codes as numbers ("statusCode": 0): restore the zero padding.
    text = _text(value)
    if text.isascii() and text.isdigit():
        text = text.zfill(width)
    return text


def _error_code(value: Any) -> str:
    code = _code(value, 4)
    return "" if code.isascii() and code.isdigit() and not code.strip("0") else code


def _number(value: Any) -> str:
    # "invoiceNo": 0 or "null" stands for "no number", never for a number issued.
    text = _text(value)
    return "" if text.lower() in {"null", "none"} or not text.strip("0") else text


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value.strip()
    return ""


def _parse_http_date(value: str) -> dt.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = _header(headers, "retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = _parse_http_date(value)
        if when is None:
            return None
        # Measured against the server's own Date when it sent one, so clock skew cancels out.
        now = _parse_http_date(_header(headers, "date")) or dt.datetime.now(dt.UTC)
        return max(0.0, (when - now).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _fault(document: Any) -> _Fault | None:
    """The WSO2 gateway's JSON fault envelope (``{"fault": {...}}``, or bare in APIM 4.x).

    We send ``Accept: application/json``, so WSO2 answers in JSON. An XML fault would read
    as "no envelope", which errs toward IN_DOUBT, never toward a resend.
    """
    top = _lower_keys(document)
    if top is None or "validationresponse" in top:
        return None
    fault = _lower_keys(top.get("fault"))
    if fault is None:
        bare = _text(top.get("code"))
        fault = top if len(bare) == 6 and bare.isascii() and bare.isdigit() else None
    if fault is None or not _text(fault.get("code")):
        return None
    return _Fault(
        _text(fault.get("code")), _text(fault.get("message")), _text(fault.get("description"))
    )


def gateway_fault(document: Any) -> tuple[str, str] | None:
    """(code, message) of a WSO2 fault envelope in a parsed body, or None (shared with POS)."""
    fault = _fault(document)
    return None if fault is None else (fault.code, fault.message or fault.description)


def _fault_proves_unsent(fault: _Fault) -> bool:
    """True when the gateway answered without calling FBR (see the module table)."""
    if not (fault.code.isascii() and fault.code.isdigit()):
        return False
    code = int(fault.code)
    if 900000 <= code <= 999999 or code == 700700 or 303000 <= code <= 303002:
        return True
    text = f"{fault.message} {fault.description}".lower()
    return code == 101503 and ("error connecting" in text or "connection refused" in text)


# -- the DI body --------------------------------------------------------------------------


def _items(raw: Any) -> tuple[tuple[ItemStatus, ...], bool]:
    """Item statuses and whether they could be read (``null`` reads as none)."""
    if raw is None:
        return (), True
    if not isinstance(raw, list):
        return (), False
    items: list[ItemStatus] = []
    for position, entry in enumerate(raw, start=1):
        fields = _lower_keys(entry)
        code = _code(fields.get("statuscode"), 2) if fields is not None else ""
        if fields is None or not code:
            return tuple(items), False
        sno_text = _text(fields.get("itemsno"))
        items.append(
            ItemStatus(
                item_sno=int(sno_text) if sno_text.isascii() and sno_text.isdigit() else position,
                status_code=code,
                status=_text(fields.get("status")),
                invoice_no=_number(fields.get("invoiceno")),
                error_code=_error_code(fields.get("errorcode")),
                error=_text(fields.get("error")),
            )
        )
    return tuple(items), True


def _item_failed(item: ItemStatus) -> bool:
    return item.status_code != "00" or item.status.lower() == "invalid" or bool(item.error_code)


def _judge_di_body(status: int, top: dict[str, Any], validate_only: bool) -> DeliveryOutcome | None:
    """Classify a body carrying ``validationResponse``; ``None`` if it has none."""
    header = _lower_keys(top.get("validationresponse"))
    if header is None:
        return None
    number = "" if validate_only else _number(top.get("invoicenumber"))
    items, readable = _items(header.get("invoicestatuses"))
    header_code = _code(header.get("statuscode"), 2)
    header_error = _error_code(header.get("errorcode"))
    header_rejects = (
        header_code not in {"", "00"}
        or bool(header_error)
        or _text(header.get("status")).lower() == "invalid"
    )
    failed = [item for item in items if _item_failed(item)]
    first = failed[0] if failed else None
    outcome = DeliveryOutcome(
        kind=OutcomeKind.IN_DOUBT,
        http_status=status,
        fbr_invoice_number=number,
        dated=_text(top.get("dated")),
        item_statuses=items,
        error_code=header_error or (first.error_code if first else ""),
        error_message=_short(_text(header.get("error")) or (first.error if first else "")),
    )
    if number:
        if not readable:
            return replace(
                outcome, detail=f"HTTP {status} invoice number with unreadable item statuses"
            )
        if header_rejects or failed:
            return replace(outcome, detail=f"HTTP {status} invoice number with a rejection")
        if items or header_code == "00":
            return replace(outcome, kind=OutcomeKind.ACCEPTED, detail=f"HTTP {status} accepted")
        return replace(outcome, detail=f"HTTP {status} invoice number without item statuses")
    if header_rejects or failed:
        where = f"item {first.item_sno} " if first and not header_error else ""
        return replace(
            outcome,
            kind=OutcomeKind.REJECTED,
            detail=f"HTTP {status} {where}rejection {outcome.error_code or 'without code'}".strip(),
        )
    if not readable:
        return replace(outcome, detail=f"HTTP {status} unreadable item statuses")
    if validate_only and header_code == "00":
        return replace(outcome, kind=OutcomeKind.ACCEPTED, detail=f"HTTP {status} valid")
    return replace(outcome, detail=f"HTTP {status} no invoice number and no rejection")


# -- classification -----------------------------------------------------------------------

_RETRYABLE_4XX = frozenset({401, 403, 404, 405, 408, 425, 429})


def classify_response(
    status: int, headers: Mapping[str, str], body: bytes, *, validate_only: bool = False
) -> DeliveryOutcome:
    """Classify a complete HTTP response from the FBR gateway (see the module table).

    Args:
        status: the HTTP status code.
        headers: response headers (looked up case-insensitively).
        body: the raw response body.
        validate_only: the call was ``validateinvoicedata``, which issues no number.

    Returns:
        The outcome; nothing is raised for any body.
    """
    outcome = _classify(status, body, validate_only)
    if validate_only and outcome.kind is OutcomeKind.IN_DOUBT:
        outcome = replace(outcome, kind=OutcomeKind.RETRYABLE)
    if outcome.kind is OutcomeKind.RETRYABLE and outcome.retry_after is None:
        outcome = replace(outcome, retry_after=_retry_after(headers))
    return outcome


def _classify(status: int, body: bytes, validate_only: bool) -> DeliveryOutcome:
    document = parse_lenient_json(body)
    top = _lower_keys(document)
    judged = _judge_di_body(status, top, validate_only) if top is not None else None
    if 200 <= status < 300:
        if judged is not None:
            return judged
        what = "body is not JSON" if document is None else "JSON without validationResponse"
        return DeliveryOutcome(OutcomeKind.IN_DOUBT, status, detail=f"HTTP {status} {what}")
    if judged is not None and (judged.kind is OutcomeKind.REJECTED or judged.fbr_invoice_number):
        # An explicit DI verdict outranks the status; a number is never dropped (no ACCEPTED
        # on an error status either: an operator confirms it).
        if judged.kind is OutcomeKind.ACCEPTED:
            judged = replace(
                judged, kind=OutcomeKind.IN_DOUBT, detail=f"HTTP {status} with a number"
            )
        return judged
    fault = _fault(document)
    if fault is not None:
        detail = f"HTTP {status} gateway fault {fault.code}"
        message = _short(fault.message or fault.description)
        proven = 400 <= status < 500 or _fault_proves_unsent(fault)
        kind = OutcomeKind.RETRYABLE if proven else OutcomeKind.IN_DOUBT
        return DeliveryOutcome(kind, status, error_message=message, detail=detail)
    if status in {307, 308} or status in _RETRYABLE_4XX:
        what = "throttled" if status == 429 else "refused before processing"
        return DeliveryOutcome(OutcomeKind.RETRYABLE, status, detail=f"HTTP {status} {what}")
    if 400 <= status < 500:
        return DeliveryOutcome(
            OutcomeKind.REJECTED,
            status,
            error_message=f"FBR refused the request (HTTP {status})",
            detail=f"HTTP {status} request refused",
        )
    what = "without gateway fault envelope" if status >= 500 else "unexpected status"
    return DeliveryOutcome(OutcomeKind.IN_DOUBT, status, detail=f"HTTP {status} {what}")


# (exception type, what happened, provably unsent), most specific first. aiohttp raises
# ConnectionTimeoutError and ClientConnectorError only while acquiring or opening a
# connection, before a byte of the request is written.
_AIOHTTP_RULES: tuple[tuple[type[BaseException], str, bool], ...] = (
    (aiohttp.ConnectionTimeoutError, "connect or pool timeout", True),
    (aiohttp.ClientConnectorDNSError, "DNS lookup failed", True),
    (aiohttp.ClientConnectorError, "connection failed", True),
    (aiohttp.ClientHttpProxyError, "proxy refused the tunnel", True),
    (aiohttp.InvalidURL, "invalid URL", True),
    (aiohttp.NonHttpUrlClientError, "unsupported URL", True),
    (aiohttp.SocketTimeoutError, "read timeout", False),
    (aiohttp.ServerDisconnectedError, "server closed the connection", False),
    (aiohttp.ClientPayloadError, "response body incomplete", False),
    (aiohttp.ClientResponseError, "malformed response", False),
    (aiohttp.ClientError, "connection error", False),
)
_HTTPX_RULES: tuple[tuple[type[BaseException], str, bool], ...] = (
    (httpx.PoolTimeout, "pool timeout", True),
    (httpx.ConnectTimeout, "connect timeout", True),
    (httpx.ConnectError, "connection failed", True),
    (httpx.ProxyError, "proxy error", True),
    (httpx.UnsupportedProtocol, "unsupported URL", True),
    # h11 validates a request before writing any of it, and our body is sized bytes.
    (httpx.LocalProtocolError, "request refused by the HTTP library", True),
    (httpx.ReadTimeout, "read timeout", False),
    (httpx.WriteTimeout, "write timeout", False),
    (httpx.ReadError, "read error", False),
    (httpx.WriteError, "write error", False),
    (httpx.RemoteProtocolError, "server broke the HTTP exchange", False),
    (httpx.DecodingError, "response could not be decoded", False),
    (TimeoutError, "overall deadline exceeded", False),
    (ConnectionRefusedError, "connection refused", True),
)


def _judge_exception(exc: BaseException) -> tuple[bool, str]:
    """(provably unsent, what happened) for one transport exception."""
    chain = [exc]
    while (cause := chain[-1].__cause__) is not None and len(chain) < 8:
        chain.append(cause)
    # httpx-aiohttp re-raises aiohttp errors as httpx ones (some wrongly), ``from`` the original.
    original = next((e for e in chain if isinstance(e, aiohttp.ClientError)), None)
    rules, subject = (_AIOHTTP_RULES, original) if original else (_HTTPX_RULES, exc)
    what, unsent = "transport error", False
    for cls, text, proven in rules:
        if isinstance(subject, cls):
            what, unsent = text, proven
            break
    names = " <- ".join(f"{type(e).__module__.split('.')[0]}.{type(e).__name__}" for e in chain)
    when = "before the request was sent" if unsent else "after the request may have reached FBR"
    return unsent, f"{what} {when} ({names})"


def classify_transport_error(
    exc: BaseException, *, request_sent: bool, validate_only: bool = False
) -> DeliveryOutcome:
    """Classify a call that produced no complete response.

    Args:
        exc: what the HTTP stack raised (httpx, aiohttp via httpx-aiohttp, or ``TimeoutError``
            from the client's overall deadline).
        request_sent: whether the request was handed to the transport at all; ``False``
            means nothing can have left the process.
        validate_only: the call was ``validateinvoicedata``: nothing fiscal can have happened.

    Returns:
        RETRYABLE when the request provably never reached FBR, otherwise IN_DOUBT
        (RETRYABLE for ``validate_only``). ``detail`` names exception types, never messages.
    """
    if request_sent:
        unsent, detail = _judge_exception(exc)
    else:
        unsent, detail = True, f"failed before the request was handed over ({type(exc).__name__})"
    kind = OutcomeKind.RETRYABLE if unsent or validate_only else OutcomeKind.IN_DOUBT
    return DeliveryOutcome(kind, None, detail=detail)
