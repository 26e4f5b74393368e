"""Operator decisions on invoices the hub cannot settle alone.

- An IN_DOUBT invoice is resolved once someone has checked FBR's records: FBR issued a
  number (record it: ACCEPTED) or it did not (release it: QUEUED, sent again).
- A REJECTED_FBR invoice may be queued again, optionally corrected; FBR issued no number for
  it, so a resend cannot create a second fiscal invoice.

Every decision is written to the invoice's attempt history (outcome ``operator``)
and as a result event, inside the same transaction as the state change, and only applies if
the invoice is still in the expected state (a late FBR answer or a second operator loses).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.fbr.channels import Channel
from server.access.tenants import TenantProfile
from server.audit.trail import append_audit_events, invoice_event
from server.clock import utcnow
from server.db.engine import Database
from server.db.models import DeliveryAttempt, Invoice, InvoiceState
from server.db.notify import Notifier, publish
from server.errors import InvalidField, InvoiceStateConflict, NotFound
from server.invoices.intake import INVOICES_TOPIC, Ingestor
from server.invoices.model import SubmittedInvoice
from server.invoices.results import NewResult, ResultKind, append_results, results_topic

FBR_NUMBER = re.compile(r"^(\d{7}|\d{13})DI\d{13}$")
MAX_NOTE = 200
# The request field that carries the number an operator read in FBR's records.
NUMBER_FIELD = "mark_issued.fbr_invoice_number"


@dataclass(frozen=True)
class Decision:
    """What an operator decided, for the record."""

    state: InvoiceState
    kind: ResultKind
    detail: str
    values: dict[str, Any]
    event_data: dict[str, Any]


class Operator:
    """Applies operator decisions for one hub process."""

    def __init__(self, db: Database, notifier: Notifier, ingestor: Ingestor) -> None:
        self._db = db
        self._notifier = notifier
        self._ingestor = ingestor

    async def resolve_in_doubt(
        self,
        tenant: TenantProfile,
        invoice_id: uuid.UUID,
        *,
        fbr_invoice_number: str | None,
        fbr_dated: str = "",
        note: str = "",
        actor: str = "system:operator",
    ) -> None:
        """Record FBR's number for an IN_DOUBT invoice, or (number None) release it."""
        if fbr_invoice_number is not None:
            if tenant.channel is Channel.POS:
                # POS fiscal numbers have no documented format: store as returned.
                if not fbr_invoice_number.strip() or len(fbr_invoice_number) > 40:
                    raise InvalidField(NUMBER_FIELD, "a POS fiscal number is 1 to 40 characters")
            elif not FBR_NUMBER.match(fbr_invoice_number) or not fbr_invoice_number.startswith(
                tenant.seller_ntn_cnic + "DI"
            ):
                raise InvalidField(
                    NUMBER_FIELD, "an FBR DI number is the seller's NTN/CNIC, 'DI' and 13 digits"
                )
            decision = Decision(
                InvoiceState.ACCEPTED,
                ResultKind.RESOLVED_ISSUED,
                "operator recorded the FBR number",
                {
                    "fbr_invoice_number": fbr_invoice_number,
                    "fbr_dated": fbr_dated or None,
                    "error": None,
                },
                {"fbr_invoice_number": fbr_invoice_number, "fbr_dated": fbr_dated},
            )
        else:
            decision = Decision(
                InvoiceState.QUEUED,
                ResultKind.REQUEUED,
                "operator released the invoice for resending",
                {"error": None},
                {},
            )
        await self._apply(tenant, invoice_id, InvoiceState.IN_DOUBT, decision, note, actor)

    async def retry_rejected(
        self,
        tenant: TenantProfile,
        invoice_id: uuid.UUID,
        *,
        corrected: SubmittedInvoice | None,
        note: str = "",
        actor: str = "system:operator",
    ) -> None:
        """Queue a REJECTED_FBR invoice again, optionally replaced by a corrected invoice.

        Raises:
            NotFound: no such invoice for the tenant.
            InvalidField: the correction changes the invoice's ERP reference.
            InvalidInvoice: the correction breaks validation rules (paths under
                ``corrected_invoice``).
            InvoiceStateConflict: the invoice is not (or no longer) REJECTED_FBR.
        """
        values: dict[str, Any] = {"error": None, "item_statuses": None}
        if corrected is not None:
            await self._check_same_reference(tenant, invoice_id, corrected)
            verdict = await self._ingestor.judge_one(tenant, corrected)
            if verdict.error is not None:
                raise verdict.error.as_error().within("corrected_invoice")
            values.update(payload=verdict.payload, content_sha256=corrected.content_sha256())
        decision = Decision(
            InvoiceState.QUEUED,
            ResultKind.REQUEUED,
            "operator queued the rejected invoice again"
            + (" with corrections" if corrected is not None else ""),
            values,
            {},
        )
        await self._apply(tenant, invoice_id, InvoiceState.REJECTED_FBR, decision, note, actor)

    async def _check_same_reference(
        self, tenant: TenantProfile, invoice_id: uuid.UUID, corrected: SubmittedInvoice
    ) -> None:
        async with self._db.read("invoice.reference") as session:
            reference = await session.scalar(
                select(Invoice.erp_reference).where(
                    Invoice.id == invoice_id, Invoice.tenant_id == tenant.id
                )
            )
        if reference is None:
            raise NotFound("invoice")
        if corrected.erp_reference != reference:
            raise InvalidField(
                "corrected_invoice.erp_reference",
                "the correction must keep the invoice's ERP reference",
            )

    async def _apply(
        self,
        tenant: TenantProfile,
        invoice_id: uuid.UUID,
        expected: InvoiceState,
        decision: Decision,
        note: str,
        actor: str,
    ) -> None:
        """Apply the decision if the invoice is still ``expected``, with all its records."""
        now = utcnow()
        async with self._db.write("operator.decide") as session:
            reference, number = await _change_state(
                session, tenant.id, invoice_id, expected, decision, now
            )
            await session.execute(
                insert(DeliveryAttempt).values(
                    tenant_id=tenant.id,
                    invoice_id=invoice_id,
                    number=number,
                    started_at=now,
                    finished_at=now,
                    outcome="operator",
                    detail=(decision.detail + (f": {note}" if note else ""))[:MAX_NOTE],
                    worker="operator",
                )
            )
            data = {
                "erp_reference": reference,
                "state": decision.state.value,
                **decision.event_data,
            }
            result = NewResult(tenant.id, invoice_id, decision.kind, data)
            await append_results(session, [result], now)
            if decision.state is InvoiceState.QUEUED:
                await publish(session, [INVOICES_TOPIC])
            event = invoice_event(
                tenant.id,
                invoice_id,
                decision.kind.value.lower(),
                actor=actor,
                previous_state=expected.value,
                state=decision.state.value,
            )
            await append_audit_events(session, [event], now)
        self._notifier.notify(results_topic(tenant.id))
        if decision.state is InvoiceState.QUEUED:
            self._notifier.notify(INVOICES_TOPIC)


async def _change_state(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    invoice_id: uuid.UUID,
    expected: InvoiceState,
    decision: Decision,
    now: dt.datetime,
) -> tuple[str, int]:
    """Move the invoice from ``expected`` to the decided state; returns its reference and
    the number of the attempt that records the decision.

    Raises:
        NotFound: the tenant has no such invoice.
        InvoiceStateConflict: the invoice is (or meanwhile became) in another state.
    """
    row = (
        await session.execute(
            select(Invoice.state, Invoice.attempt_count, Invoice.erp_reference).where(
                Invoice.id == invoice_id, Invoice.tenant_id == tenant_id
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound("invoice")
    if row.state != expected.value:
        raise InvoiceStateConflict(expected.value, row.state)
    number = row.attempt_count + 1
    changed = await session.execute(
        update(Invoice)
        .where(Invoice.id == invoice_id, Invoice.state == expected.value)
        .values(
            state=decision.state.value,
            attempt_count=number,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=now if decision.state is InvoiceState.QUEUED else None,
            **decision.values,
        )
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise InvoiceStateConflict(expected.value, "changed meanwhile")
    return row.erp_reference, number
