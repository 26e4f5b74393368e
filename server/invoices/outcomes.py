"""Outcomes: what FBR's answer to an attempt does to the invoice, and writing a batch of them.

- ACCEPTED / REJECTED: final; a result event is written.
- RETRYABLE (provably before FBR saw the request): RETRY_WAIT with capped exponential
  backoff and jitter (at least FBR's Retry-After); no result event.
- IN_DOUBT (FBR may have issued a number): never resent automatically; an event alerts.

Everything up to the rows to write is pure (:func:`outcome_transition`,
:func:`rejection_error`, :func:`doubt_error`, :class:`RetryPolicy`); :func:`record_outcomes`
writes a whole batch of finished attempts in one transaction, since a transaction's fixed
cost would otherwise dominate at high answer rates.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, cast

from opentelemetry import trace
from sqlalchemy import Table, and_, bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.codes import fbr_error_path
from clients.fbr.responses import DeliveryOutcome, OutcomeKind
from clients.fbr.rules import Violation
from server.audit.trail import NewAuditEvent, append_audit_events, invoice_event
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState
from server.db.notify import Notifier
from server.invoices.claims import Claimed, claim_event
from server.invoices.model import InvoiceError
from server.invoices.results import NewResult, ResultKind, append_results, results_topic
from server.observability.semconv import MESSAGING_BATCH_MESSAGE_COUNT

_INVOICES = cast(Table, Invoice.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_AUDIT_ACTIONS = {
    OutcomeKind.ACCEPTED: "accepted",
    OutcomeKind.REJECTED: "rejected_fbr",
    OutcomeKind.RETRYABLE: "retry_wait",
    OutcomeKind.IN_DOUBT: "in_doubt",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for failures that provably happened before FBR saw the request.

    Attributes:
        base_seconds: first backoff step.
        max_seconds: cap.
    """

    base_seconds: float = 1.0
    max_seconds: float = 300.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based): capped exponential, equal jitter."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Finished:
    """An attempt whose outcome is known and waits to be recorded."""

    claimed: Claimed
    outcome: DeliveryOutcome
    at: dt.datetime
    # The trace of the attempt's span ("" when not traced): kept on the attempt row, the
    # result event and the audit event.
    trace_id: str = ""


def rejection_error(outcome: DeliveryOutcome) -> InvoiceError:
    """The error of an invoice FBR rejected: one violation per failing line, or the header.

    An outcome without an HTTP status was refused before anything was sent (its body could
    not be built): ``INVOICE_NOT_SENDABLE``, not FBR's rejection.
    """
    if outcome.http_status is None:
        return InvoiceError(
            "INVOICE_NOT_SENDABLE",
            "the hub could not build FBR's request from this invoice; nothing was sent",
            (Violation("items", "", outcome.error_message or "not sent"),),
        )
    violations = tuple(
        Violation(
            fbr_error_path(item.error_code, item.item_sno),
            item.error_code,
            item.error or "FBR rejected this line",
        )
        for item in outcome.item_statuses
        if item.status_code != "00"
    ) or (
        Violation(
            fbr_error_path(outcome.error_code),
            outcome.error_code,
            outcome.error_message or "FBR rejected the invoice",
        ),
    )
    codes = ", ".join(sorted({v.fbr_error_code for v in violations if v.fbr_error_code}))
    return InvoiceError(
        "FBR_REJECTED",
        f"FBR rejected the invoice (codes {codes})" if codes else "FBR rejected the invoice",
        violations,
    )


def doubt_error(detail: str) -> InvoiceError:
    """The error of an invoice in doubt."""
    return InvoiceError(
        "FBR_OUTCOME_UNKNOWN",
        f"FBR may or may not have issued a number ({detail}); the hub will not resend on its "
        "own. Check FBR's records, then call ResolveInvoice.",
    )


def outcome_transition(
    claimed: Claimed,
    outcome: DeliveryOutcome,
    at: dt.datetime,
    *,
    retry: RetryPolicy,
    rng: random.Random,
) -> tuple[dict[str, Any], NewResult | None]:
    """The invoice columns an outcome sets, and the result event it reports (if any).

    Args:
        claimed: the attempt's claim.
        outcome: what FBR answered (or what is known of it).
        at: when the answer came.
        retry: backoff for a retryable outcome.
        rng: the jitter source; drawn from only for a retryable outcome.
    """
    if outcome.kind is OutcomeKind.ACCEPTED:
        return _accepted(claimed, outcome, at)
    if outcome.kind is OutcomeKind.REJECTED:
        return _rejected(claimed, outcome, at)
    if outcome.kind is OutcomeKind.RETRYABLE:
        delay = max(retry.delay(claimed.attempt, rng), outcome.retry_after or 0.0)
        return _retry_later(outcome, at, delay), None
    return _in_doubt(claimed, outcome, at)


def _lease_cleared(at: dt.datetime) -> dict[str, Any]:
    return {"lease_owner": None, "lease_expires_at": None, "updated_at": at}


def _item_statuses(outcome: DeliveryOutcome) -> list[dict[str, Any]]:
    return [
        {
            "item_sno": s.item_sno,
            "status_code": s.status_code,
            "status": s.status,
            "invoice_no": s.invoice_no,
            "error_code": s.error_code,
            "error": s.error,
        }
        for s in outcome.item_statuses
    ]


def _accepted(
    claimed: Claimed, outcome: DeliveryOutcome, at: dt.datetime
) -> tuple[dict[str, Any], NewResult]:
    state = InvoiceState.ACCEPTED.value
    values = {
        **_lease_cleared(at),
        "state": state,
        "fbr_invoice_number": outcome.fbr_invoice_number,
        "fbr_dated": outcome.dated,
        "item_statuses": _item_statuses(outcome),
        "error": None,
        "next_attempt_at": None,
    }
    data = {
        "erp_reference": claimed.erp_reference,
        "fbr_invoice_number": outcome.fbr_invoice_number,
        "fbr_dated": outcome.dated,
        "state": state,
    }
    return values, NewResult(claimed.tenant.id, claimed.invoice_id, ResultKind.ACCEPTED, data)


def _rejected(
    claimed: Claimed, outcome: DeliveryOutcome, at: dt.datetime
) -> tuple[dict[str, Any], NewResult]:
    state = InvoiceState.REJECTED_FBR.value
    error = rejection_error(outcome).to_json()
    values = {
        **_lease_cleared(at),
        "state": state,
        "item_statuses": _item_statuses(outcome),
        "error": error,
        "next_attempt_at": None,
    }
    data = {"erp_reference": claimed.erp_reference, "error": error, "state": state}
    return values, NewResult(claimed.tenant.id, claimed.invoice_id, ResultKind.REJECTED, data)


def _retry_later(outcome: DeliveryOutcome, at: dt.datetime, delay: float) -> dict[str, Any]:
    return {
        **_lease_cleared(at),
        "state": InvoiceState.RETRY_WAIT.value,
        "next_attempt_at": at + dt.timedelta(seconds=delay),
        "error": InvoiceError(
            "FBR_UNAVAILABLE", f"not delivered yet ({outcome.detail}); retrying"
        ).to_json(),
    }


def _in_doubt(
    claimed: Claimed, outcome: DeliveryOutcome, at: dt.datetime
) -> tuple[dict[str, Any], NewResult]:
    state = InvoiceState.IN_DOUBT.value
    error = doubt_error(outcome.detail).to_json()
    values = {
        **_lease_cleared(at),
        "state": state,
        "fbr_invoice_number": outcome.fbr_invoice_number or None,
        "error": error,
        "next_attempt_at": None,
    }
    data = {"erp_reference": claimed.erp_reference, "error": error, "state": state}
    return values, NewResult(claimed.tenant.id, claimed.invoice_id, ResultKind.IN_DOUBT, data)


async def record_outcomes(
    db: Database,
    notifier: Notifier,
    batch: list[Finished],
    *,
    retry: RetryPolicy,
    rng: random.Random,
    now: dt.datetime,
) -> None:
    """Write the outcomes of finished attempts and their result events, in one transaction.

    Args:
        db: the database.
        notifier: wakes the results followers of every tenant with a new event.
        batch: the finished attempts.
        retry: backoff for retryable outcomes.
        rng: jitter source of the backoff.
        now: the time the result and audit events are written at.
    """
    invoice_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    events: list[NewResult] = []
    for finished in batch:
        claimed = finished.claimed
        values, event = outcome_transition(
            claimed, finished.outcome, finished.at, retry=retry, rng=rng
        )
        invoice_rows.append({"b_id": claimed.invoice_id, "b_attempt": claimed.attempt, **values})
        attempt_rows.append(_finished_attempt(finished))
        if event is not None:
            events.append(replace(event, trace_id=finished.trace_id))
    audit = _outcome_audit(batch)
    async with db.write("outbox.record") as session:
        trace.get_current_span().set_attribute(MESSAGING_BATCH_MESSAGE_COUNT, len(batch))
        await _update_invoices(session, invoice_rows)
        await _finish_attempts(session, attempt_rows)
        await append_results(session, events, now)
        await append_audit_events(session, audit, now)
    for tenant_id in {e.tenant_id for e in events}:
        notifier.notify(results_topic(tenant_id))


def _finished_attempt(finished: Finished) -> dict[str, Any]:
    outcome = finished.outcome
    return {
        "b_invoice": finished.claimed.invoice_id,
        "b_number": finished.claimed.attempt,
        "finished_at": finished.at,
        "outcome": outcome.kind.name.lower(),
        "http_status": outcome.http_status,
        "fbr_error_code": outcome.error_code or None,
        "detail": outcome.detail[:200] or None,
        "trace_id": finished.trace_id or None,
    }


def _outcome_audit(batch: Iterable[Finished]) -> list[NewAuditEvent]:
    """The deferred claim event and the outcome event of every finished attempt."""
    audit: list[NewAuditEvent] = []
    for f in batch:
        outcome = invoice_event(
            f.claimed.tenant.id,
            f.claimed.invoice_id,
            _AUDIT_ACTIONS[f.outcome.kind],
            actor="system:forwarder",
            attempt=str(f.claimed.attempt),
            http_status=str(f.outcome.http_status or ""),
            fbr_error_code=f.outcome.error_code,
        )
        # Both events belong to the attempt's trace, not to the batch that records them.
        audit.append(replace(claim_event(f.claimed), trace_id=f.trace_id))
        audit.append(replace(outcome, trace_id=f.trace_id))
    return audit


async def _update_invoices(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Apply the transitions; each row holds its invoice's ``b_id``, ``b_attempt`` and columns."""
    # Group by the set of columns written so that each group is one executemany.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in rows:
        groups.setdefault(tuple(sorted(values)), []).append(values)
    for keys, group in groups.items():
        columns = [k for k in keys if not k.startswith("b_")]
        statement = (
            update(_INVOICES)
            .where(
                _INVOICES.c.id == bindparam("b_id"),
                _INVOICES.c.attempt_count == bindparam("b_attempt"),
                # An operator may have resolved the invoice meanwhile; a late answer from FBR
                # still wins over IN_DOUBT, since it is the truth about this attempt.
                or_(
                    _INVOICES.c.state == InvoiceState.SENDING.value,
                    and_(
                        _INVOICES.c.state == InvoiceState.IN_DOUBT.value,
                        _INVOICES.c.lease_owner.is_(None),
                    ),
                ),
            )
            .values({c: bindparam(c) for c in columns})
        )
        await session.execute(statement, group)


async def _finish_attempts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(
        update(_ATTEMPTS)
        .where(
            _ATTEMPTS.c.invoice_id == bindparam("b_invoice"),
            _ATTEMPTS.c.number == bindparam("b_number"),
        )
        .values(
            finished_at=bindparam("finished_at"),
            outcome=bindparam("outcome"),
            http_status=bindparam("http_status"),
            fbr_error_code=bindparam("fbr_error_code"),
            detail=bindparam("detail"),
            trace_id=bindparam("trace_id"),
        ),
        rows,
    )
