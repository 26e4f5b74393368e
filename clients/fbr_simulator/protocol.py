"""FBR's side of the DI exchange: wire-type checks and the ``validationResponse`` bodies.

The shapes follow PRAL's specification v1.12 [SPEC p.12-14] (docs/fbr-coverage.md §2.6):

- accepted: ``invoiceNumber``, ``dated`` and per line ``invoiceNo`` = number + ``-1``, ``-2``...;
- header-level rejection: header ``statusCode "01"``, ``errorCode``/``error``,
  ``invoiceStatuses: null`` and no ``invoiceNumber``;
- item-level rejection: header ``statusCode "00"`` but ``status "Invalid"``; each bad line
  ``statusCode "01"`` with its ``errorCode``/``error``; every ``invoiceNo`` null, no number.

A violation whose path starts with ``items[`` is a line error, anything else a header error.
Like FBR, one code is reported per header or line: the first violation in rule-table order
(a header error hides the line errors). The validate endpoints answer the same way without
``invoiceNumber`` and ``invoiceNo``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from clients.fbr.payload import ITEM_NUMBER_FIELDS, REQUIRED_NUMBER_FIELDS
from clients.fbr.rules import Violation

# (FBR key, our field) of the numeric line fields.
_NUMBER_KEYS = tuple((theirs, ours) for ours, theirs in ITEM_NUMBER_FIELDS)
# A missing or null extraTax draws 0300 too [KIT-DI §7.2]; the hub always sends it.
_REQUIRED_KEYS = frozenset(
    theirs for ours, theirs in ITEM_NUMBER_FIELDS if ours in REQUIRED_NUMBER_FIELDS | {"extra_tax"}
)
# The empty string stands for "no extra/further tax" on reduced, exempt and zero-rated lines.
_MAY_BE_EMPTY = frozenset({"extraTax", "furtherTax"})


def wire_violations(body: dict[str, Any]) -> list[Violation]:
    """0300 for each numeric line field sent as a string, null, boolean or not at all.

    The rules see the normalised invoice, where every value is a string, so the JSON types
    FBR insists on [ERR 0300] are checked here, on the body as received.
    """
    items = body.get("items")
    if not isinstance(items, list):
        return []
    found: list[Violation] = []
    for index, raw in enumerate(items):
        if not isinstance(raw, dict):
            continue
        # Keys with stray spaces count, as in from_fbr_json; clean only when one is missing.
        line = raw if raw.keys() >= _REQUIRED_KEYS else {str(k).strip(): v for k, v in raw.items()}
        for key, field in _NUMBER_KEYS:
            if key not in line:
                if key in _REQUIRED_KEYS:
                    found.append(_not_a_number(index, field, key))
                continue
            value = line[key]
            if type(value) in (int, float) or (value == "" and key in _MAY_BE_EMPTY):
                continue
            found.append(_not_a_number(index, field, key))
    return found


def _not_a_number(index: int, field: str, key: str) -> Violation:
    message = f"Provide a valid decimal value in {key}: a JSON number, not text, null or empty."
    return Violation(f"items[{index}].{field}", "0300", message)


def iso_date(text: str) -> datetime.date | None:
    """A ``YYYY-MM-DD`` date, or None."""
    try:
        return datetime.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _line_index(path: str) -> int | None:
    if not path.startswith("items["):
        return None
    return int(path[6 : path.index("]")])


def header_error(violations: Sequence[Violation]) -> Violation | None:
    """The header violation FBR would report, if any."""
    for violation in violations:
        if not violation.path.startswith("items["):
            return violation
    return None


def header_rejection(dated: str, violation: Violation) -> dict[str, Any]:
    """The body of a header-level rejection."""
    return {
        "dated": dated,
        "validationResponse": {
            "statusCode": "01",
            "status": "Invalid",
            "errorCode": violation.fbr_error_code,
            "error": violation.message,
            "invoiceStatuses": None,
        },
    }


def line_verdict(
    dated: str,
    line_count: int,
    violations: Sequence[Violation],
    invoice_number: str | None,
    *,
    numbered: bool,
) -> dict[str, Any]:
    """The body when the header is valid: accepted, or rejected line by line.

    Args:
        dated: FBR's ``dated`` value (Pakistan time).
        line_count: number of lines in the invoice.
        violations: line violations (paths ``items[i]...``), in rule-table order.
        invoice_number: the number issued, when the invoice is accepted by the post endpoint.
        numbered: whether the lines carry ``invoiceNo`` (post endpoints) or not (validate).
    """
    first_by_line: dict[int, Violation] = {}
    for violation in violations:
        index = _line_index(violation.path)
        if index is not None and index not in first_by_line:
            first_by_line[index] = violation
    statuses: list[dict[str, Any]] = []
    for index in range(line_count):
        status: dict[str, Any] = {"itemSNo": str(index + 1)}
        bad = first_by_line.get(index)
        status["statusCode"] = "01" if bad else "00"
        status["status"] = "Invalid" if bad else "Valid"
        if numbered:
            status["invoiceNo"] = f"{invoice_number}-{index + 1}" if invoice_number else None
        status["errorCode"] = bad.fbr_error_code if bad else ""
        status["error"] = bad.message if bad else ""
        statuses.append(status)
    body: dict[str, Any] = {}
    if invoice_number:
        body["invoiceNumber"] = invoice_number
    body["dated"] = dated
    body["validationResponse"] = {
        "statusCode": "00",
        "status": "Invalid" if first_by_line else "Valid",
        "error": "",
        "invoiceStatuses": statuses,
    }
    return body
