"""Correction: an account is corrected in place; a buyer's invoices only get annotations.

An invoice that is, or may become, a record FBR holds is never altered: a correction of the
buyer's data is kept beside it, and for an invoice FBR accepted the answer names the legal
route (a debit note, or a credit invoice on POS).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from server.access.accounts import EMAIL
from server.db.models import Account, AccountStatus, InvoiceAnnotation, InvoiceState
from server.errors import AccountAnonymised, FieldNotCorrectable, InvalidField
from server.privacy.subjects import (
    ACCOUNT_FIELDS,
    BUYER_FIELDS,
    Subject,
    buyer_invoices,
    load_account,
)

DEBIT_NOTE_ROUTE = (
    "FBR has accepted {count} of these invoices; the stored FBR record is never altered. The "
    "legal route to correct an accepted invoice is a debit note (or credit invoice on POS) "
    "issued from the ERP that references the original FBR invoice number."
)


@dataclass(frozen=True)
class AnnotatedInvoice:
    """An invoice that received a correction annotation."""

    invoice_id: uuid.UUID
    state: str
    fbr_accepted: bool


@dataclass(frozen=True)
class CorrectionResult:
    """What a correction did."""

    corrected_fields: list[str]
    annotations: list[AnnotatedInvoice]
    legal_route: str

    def to_record(self) -> dict[str, Any]:
        """The result as JSON-ready data (kept for replays of the request id)."""
        return {
            "corrected_fields": self.corrected_fields,
            "annotations": [
                {"invoice_id": str(a.invoice_id), "state": a.state, "accepted": a.fbr_accepted}
                for a in self.annotations
            ],
            "legal_route": self.legal_route,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CorrectionResult:
        """The result read back from :meth:`to_record`."""
        return cls(
            list(record["corrected_fields"]),
            [
                AnnotatedInvoice(uuid.UUID(a["invoice_id"]), a["state"], a["accepted"])
                for a in record["annotations"]
            ],
            record["legal_route"],
        )


def _check_account_values(corrections: Mapping[str, str]) -> None:
    """Each corrected account value must fit its column (and an e-mail be one).

    Raises:
        InvalidField: the first value that does not (named by index, never by value).
    """
    columns = cast(Table, Account.__table__).c
    for index, (name, value) in enumerate(corrections.items()):
        limit: int | None = getattr(columns[name].type, "length", None)
        if limit is not None and len(value) > limit:
            raise InvalidField(
                f"corrections[{index}].value", f"{name} must be at most {limit} characters"
            )
        if name == "email" and not EMAIL.match(value):
            raise InvalidField(f"corrections[{index}].value", "email must be an e-mail address")


async def correct(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    subject: Subject,
    ref: str,
    corrections: Mapping[str, str],
    *,
    note: str,
    request_id: str,
    now: dt.datetime,
) -> CorrectionResult:
    """Correct an account in place, or annotate a buyer's invoices (never altering them).

    Raises:
        FieldNotCorrectable: a field the subject's kind has not.
        NotFound: no such account, or no invoice names the buyer.
        AccountAnonymised: nothing of an anonymised account can be corrected.
    """
    allowed = ACCOUNT_FIELDS if subject.account_id is not None else BUYER_FIELDS
    for index, name in enumerate(corrections):
        if name not in allowed:
            raise FieldNotCorrectable(
                f"corrections[{index}].field", f"field must be one of {', '.join(allowed)}"
            )
    if subject.account_id is not None:
        _check_account_values(corrections)
        account = await load_account(session, tenant_id, subject.account_id, for_update=True)
        if account.status == AccountStatus.ANONYMISED:
            raise AccountAnonymised("the account has been anonymised")
        for name, value in corrections.items():
            setattr(account, name, value)
        return CorrectionResult(sorted(corrections), [], "")
    assert subject.buyer_ntn_cnic is not None
    annotated = []
    for invoice in await buyer_invoices(session, tenant_id, subject.buyer_ntn_cnic):
        session.add(
            InvoiceAnnotation(
                tenant_id=tenant_id,
                invoice_id=invoice.id,
                subject_ref=ref,
                corrections=dict(corrections),
                note=note,
                request_id=request_id,
                created_at=now,
            )
        )
        annotated.append(
            AnnotatedInvoice(invoice.id, invoice.state, invoice.state == InvoiceState.ACCEPTED)
        )
    accepted = sum(a.fbr_accepted for a in annotated)
    route = DEBIT_NOTE_ROUTE.format(count=accepted) if accepted else ""
    return CorrectionResult([], annotated, route)
