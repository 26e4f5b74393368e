"""What an IMS (POS) ``PostData`` call came to (docs/fbr-coverage.md §6.5, §7.4); no I/O here.

| Response | Outcome |
|---|---|
| 2xx, ``Code`` 100 (string or number) and a number in ``InvoiceNumber`` or | ACCEPTED |
| ``FBRInvoiceNumber`` (not "Not Available") | |
| ``Code`` 102 ("Invalid data received") without a number, any status | REJECTED |
| 2xx, ``Code`` 100 without a number, another code, or a number with a code | IN_DOUBT |
| that is not 100 | |
| 2xx HTML or JSON without ``Code`` | IN_DOUBT |
| anything else: as the DI gateway table (:mod:`clients.fbr.responses`): WSO2 | |
| 401/403 faults 900901/900902/900908/900910 and 429 RETRYABLE, bare 5xx IN_DOUBT | |

There is no dry run on this channel and every call creates a record [KIT-IMS §10], so nothing
FBR may have processed is ever RETRYABLE. Numbers are kept exactly as sent: a numeric
``FBRInvoiceNumber`` such as 11000120181112000369 (beyond 64-bit signed) is read as an integer,
never a float, and not validated by pattern [LX §11].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clients.fbr.responses import (
    DeliveryOutcome,
    OutcomeKind,
    classify_response,
    gateway_fault,
    parse_lenient_json,
)

POS_ACCEPTED = "100"
POS_REJECTED = "102"
_NO_NUMBER = {"", "not available", "null", "none", "0"}
_MESSAGE_LIMIT = 300


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(top: Mapping[str, Any]) -> str:
    for key in ("invoicenumber", "fbrinvoicenumber"):
        text = _text(top.get(key))
        if text.lower() not in _NO_NUMBER:
            return text
    return ""


def _errors(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_text(item) or str(item) for item in value if item)
    return _text(value)


def classify_pos_response(status: int, headers: Mapping[str, str], body: bytes) -> DeliveryOutcome:
    """Classify a complete HTTP response of the IMS ``PostData`` endpoint (module table).

    Args:
        status: the HTTP status code.
        headers: response headers.
        body: the raw response body.

    Returns:
        The outcome; ACCEPTED carries the fiscal number in ``fbr_invoice_number``.
    """
    document = parse_lenient_json(body)
    top = (
        {str(k).strip().lower(): v for k, v in document.items()}
        if isinstance(document, dict)
        else None
    )
    if top is not None and "code" in top and gateway_fault(document) is None:
        code = _text(top.get("code"))
        number = _number(top)
        message = (_text(top.get("response")) + " " + _errors(top.get("errors"))).strip()
        outcome = DeliveryOutcome(
            OutcomeKind.IN_DOUBT,
            status,
            fbr_invoice_number=number,
            error_code="" if code == POS_ACCEPTED else code,
            error_message=message[:_MESSAGE_LIMIT],
        )
        success = 200 <= status < 300
        if success and code == POS_ACCEPTED and number:
            return _with(outcome, OutcomeKind.ACCEPTED, f"HTTP {status} POS code 100")
        if code == POS_REJECTED and not number:
            return _with(outcome, OutcomeKind.REJECTED, f"HTTP {status} POS code 102")
        if success or number:
            what = "without a number" if not number else "with a number"
            return _with(outcome, OutcomeKind.IN_DOUBT, f"HTTP {status} POS code {code} {what}")
    if 200 <= status < 300:
        what = "body is not JSON" if document is None else "JSON without Code"
        return DeliveryOutcome(OutcomeKind.IN_DOUBT, status, detail=f"HTTP {status} {what}")
    # Gateway faults, throttling and bare errors read exactly as on the DI channel.
    return classify_response(status, headers, body)


def _with(outcome: DeliveryOutcome, kind: OutcomeKind, detail: str) -> DeliveryOutcome:
    return DeliveryOutcome(
        kind,
        outcome.http_status,
        fbr_invoice_number=outcome.fbr_invoice_number,
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        detail=detail,
    )
