"""Validation of submitted invoices, for both FBR channels, with what the database knows.

The rules themselves live in one place, ``clients.fbr.rules`` (DI) and
``clients.fbr.pos.rules`` (POS), shared with the FBR simulator. This module supplies what
they need from the hub: today's date in Pakistan, the tenant (seller block, environment,
assigned sandbox scenarios, channel), the current FBR reference data, and the originals of
debit notes in the batch (looked up in one query per batch).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from clients.fbr.payload import INVOICE_TYPE_DEBIT_NOTE, NormalisedInvoice
from clients.fbr.pos.payload import with_totals
from clients.fbr.pos.rules import PosValidationContext, validate_pos_invoice
from clients.fbr.rules import ValidationContext, Violation, validate_invoice
from server.access.tenants import TenantProfile
from server.db.engine import Database
from server.db.models import Invoice, InvoiceState
from server.errors import FieldProblem, InvalidInvoice
from server.invoices.reference_data import ReferenceStore

PAKISTAN_TIME = dt.timezone(dt.timedelta(hours=5), "PKT")
MAX_REFERENCE_LENGTH = 100
# Size limits: generous for real invoices, tight enough that one invoice cannot make
# the hub (or FBR) chew on megabytes. Decimal strings are far shorter than this anyway.
MAX_ITEMS = 1000
MAX_TEXT_LENGTH = 1000
_TOO_LONG = f"Too long: at most {MAX_TEXT_LENGTH} characters."


@dataclass(frozen=True)
class Rejection:
    """Why an invoice was not queued.

    Attributes:
        reason: UPPER_SNAKE reason (``INVOICE_INVALID``, ``ERP_REFERENCE_REUSED``...).
        message: a summary safe to show.
        problems: the field violations, paths relative to the invoice (``items[2].hs_code``);
            the servicer prefixes ``invoices[i].`` when it answers a batch.
    """

    reason: str
    message: str
    problems: tuple[FieldProblem, ...]

    def as_error(self) -> InvalidInvoice:
        """The rejection raised as an error (for calls that validate one invoice)."""
        return InvalidInvoice(self.message, self.problems)

    def to_json(self) -> dict[str, Any]:
        """The form stored in ``invoices.error``."""
        return {
            "reason": self.reason,
            "message": self.message,
            "violations": [
                {"path": p.path, "fbr_error_code": p.fbr_error_code, "message": p.message}
                for p in self.problems
            ],
        }


@dataclass(frozen=True)
class Original:
    """An accepted invoice that a debit note in the batch refers to."""

    invoice_id: uuid.UUID
    invoice_date: dt.date | None


@dataclass
class BatchContext:
    """Everything the rules need for one batch of one tenant."""

    tenant: TenantProfile
    di: ValidationContext
    pos: PosValidationContext
    originals: dict[str, Original] = field(default_factory=dict)


def channel_of(invoice: NormalisedInvoice) -> str:
    """``pos`` for a POS invoice (converted from ``Invoice.pos``), else ``di``."""
    return str(invoice.get("channel", "di"))


def without_reference(invoice: NormalisedInvoice) -> NormalisedInvoice:
    """The invoice as the ERP submitted it, minus its own ``erp_reference``."""
    submitted = dict(invoice)
    submitted.pop("erp_reference", None)
    return submitted


class InvoiceValidator:
    """Judges invoices for a tenant; one per hub process."""

    def __init__(
        self,
        db: Database,
        reference: ReferenceStore,
        *,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._db = db
        self._reference = reference
        self._clock = clock

    async def prepare(
        self, tenant: TenantProfile, invoices: Sequence[NormalisedInvoice]
    ) -> BatchContext:
        """The context for a batch: looks up the originals its debit notes name."""
        refs = {
            invoice.get("invoice_ref_no", "")
            for invoice in invoices
            if invoice.get("invoice_type") == INVOICE_TYPE_DEBIT_NOTE
            and invoice.get("invoice_ref_no")
        }
        originals: dict[str, Original] = {}
        if refs:
            async with self._db.read("validation.originals") as session:
                rows = await session.execute(
                    select(Invoice.id, Invoice.fbr_invoice_number, Invoice.invoice_date).where(
                        Invoice.tenant_id == tenant.id,
                        Invoice.fbr_invoice_number.in_(refs),
                        Invoice.state == InvoiceState.ACCEPTED.value,
                    )
                )
                originals = {
                    number: Original(invoice_id, day) for invoice_id, number, day in rows if number
                }

        def original_date(number: str) -> dt.date | None:
            found = originals.get(number)
            return found.invoice_date if found else None

        di = ValidationContext(
            today=self._clock().astimezone(PAKISTAN_TIME).date(),
            environment=tenant.fbr_environment,
            seller_ntn_cnic=tenant.seller_ntn_cnic,
            reference_data=self._reference.current(),
            original_invoice=original_date,
            assigned_scenarios=tenant.assigned_scenarios,
        )
        return BatchContext(tenant, di, PosValidationContext(), originals)

    def stored_payload(self, tenant: TenantProfile, invoice: NormalisedInvoice) -> dict[str, Any]:
        """What is stored (and sent): the ERP's invoice plus what the tenant supplies."""
        submitted = without_reference(invoice)
        if channel_of(invoice) == "pos":
            return with_totals(
                {**submitted, "pos_id": tenant.pos_id, "usin": invoice.get("erp_reference", "")}
            )
        return {**submitted, **tenant.seller_fields()}

    def validate(
        self,
        invoice: NormalisedInvoice,
        batch: BatchContext,
        *,
        payload: NormalisedInvoice | None = None,
    ) -> Rejection | None:
        """Judge one invoice; problem paths are relative to the invoice (``items[0].uom``).

        Args:
            payload: ``stored_payload`` of the invoice, if the caller has built it already.
        """
        tenant = batch.tenant
        problems: list[FieldProblem] = []
        reference = invoice.get("erp_reference", "")
        if not reference or len(reference) > MAX_REFERENCE_LENGTH:
            problems.append(
                FieldProblem(
                    "erp_reference",
                    f"Give the ERP's own reference, 1 to {MAX_REFERENCE_LENGTH} characters.",
                )
            )
        problems.extend(_size_problems(invoice))
        channel = channel_of(invoice)
        violations: list[Violation]
        if channel != tenant.channel:
            violations = [
                Violation(
                    "pos" if tenant.channel == "pos" else "items",
                    "",
                    "This tenant sends to FBR's POS fiscal channel: fill `pos` (and leave the "
                    "Digital Invoicing fields empty)."
                    if tenant.channel == "pos"
                    else "This tenant sends to FBR's Digital Invoicing channel: fill the "
                    "invoice fields and `items`, not `pos`.",
                )
            ]
        elif channel == "pos":
            full = self.stored_payload(tenant, invoice) if payload is None else payload
            violations = [
                Violation(
                    f"pos.{v.path}" if not v.path.startswith("usin") else "erp_reference",
                    v.fbr_error_code,
                    v.message,
                )
                for v in validate_pos_invoice(full, batch.pos)
            ]
        else:
            full = self.stored_payload(tenant, invoice) if payload is None else payload
            violations = validate_invoice(full, batch.di)
        problems.extend(FieldProblem(v.path, v.message, v.fbr_error_code) for v in violations)
        if not problems:
            return None
        codes = sorted({p.fbr_error_code for p in problems if p.fbr_error_code})
        return Rejection(
            reason="INVOICE_INVALID",
            message=f"invoice failed {len(problems)} validation check(s)"
            + (f" (FBR codes {', '.join(codes)})" if codes else ""),
            problems=tuple(problems),
        )

    def original_of(self, invoice: NormalisedInvoice, batch: BatchContext) -> uuid.UUID | None:
        """The hub id of the accepted original a debit note names, if it is in the hub."""
        if invoice.get("invoice_type") != INVOICE_TYPE_DEBIT_NOTE:
            return None
        found = batch.originals.get(invoice.get("invoice_ref_no", ""))
        return found.invoice_id if found else None


def _size_problems(invoice: NormalisedInvoice) -> list[FieldProblem]:
    """Field length and line count limits (field names only, never the values)."""
    problems = [
        FieldProblem(name, _TOO_LONG)
        for name, value in invoice.items()
        if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH
    ]
    items = invoice.get("items") or []
    if len(items) > MAX_ITEMS:
        problems.append(FieldProblem("items", f"Too many lines: at most {MAX_ITEMS} per invoice."))
    for index, item in enumerate(items[:MAX_ITEMS]):
        if not _short_enough(item):
            problems.extend(
                FieldProblem(f"items[{index}].{name}", _TOO_LONG)
                for name, value in item.items()
                if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH
            )
    if channel_of(invoice) == "pos":
        problems = [
            FieldProblem(p.path if p.path == "erp_reference" else f"pos.{p.path}", p.message)
            for p in problems
        ]
    return problems


def _short_enough(item: Mapping[str, Any]) -> bool:
    """Whether no text of a line can be too long, because all of it together is not.

    That is nearly every line, and measuring the joined text is one pass in C instead of a
    check per field; a line that fails it (or holds a non-text value) is checked field by field.
    """
    try:
        return len("".join(item.values())) <= MAX_TEXT_LENGTH
    except TypeError:
        return False
