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

from clients.fbr.channels import Channel
from clients.fbr.payload import INVOICE_TYPE_DEBIT_NOTE, NormalisedInvoice
from clients.fbr.pos.payload import with_totals
from clients.fbr.pos.rules import PosValidationContext, validate_pos_invoice
from clients.fbr.rules import ValidationContext, Violation, validate_invoice
from server.access.tenants import TenantProfile
from server.db.engine import Database
from server.db.models import Invoice, InvoiceState
from server.invoices.model import InvoiceError, SubmittedInvoice
from server.invoices.reference_data import ReferenceStore
from server.invoices.rejections import capped

PAKISTAN_TIME = dt.timezone(dt.timedelta(hours=5), "PKT")
MAX_REFERENCE_LENGTH = 100
# Size limits: generous for real invoices, tight enough that one invoice cannot make
# the hub (or FBR) chew on megabytes. Decimal strings are far shorter than this anyway.
MAX_ITEMS = 1000
MAX_TEXT_LENGTH = 1000
_TOO_LONG = f"Too long: at most {MAX_TEXT_LENGTH} characters."
# PostgreSQL can store no NUL in text, nor read one out of JSON; invalid UTF-8 arrives as one
# (server.api.decoding).
_NUL = "\x00"
_NOT_STORABLE = "Must be valid UTF-8 text without NUL characters."


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


@dataclass(frozen=True)
class Verdict:
    """What validation says about one submitted invoice.

    Attributes:
        payload: what is stored and later sent to FBR (the body plus what the tenant supplies).
        error: why the invoice cannot be queued, or None.
        original_id: for a valid debit note, the hub id of the accepted original it names.
    """

    payload: NormalisedInvoice
    error: InvoiceError | None
    original_id: uuid.UUID | None = None

    @property
    def valid(self) -> bool:
        """True when the invoice may be queued for FBR."""
        return self.error is None


def reference_usable(reference: str) -> bool:
    """Whether an ERP reference can identify an invoice (1 to 100 characters, no NUL)."""
    return 0 < len(reference) <= MAX_REFERENCE_LENGTH and _NUL not in reference


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
        self, tenant: TenantProfile, invoices: Sequence[SubmittedInvoice]
    ) -> BatchContext:
        """The context for a batch: looks up the originals its debit notes name."""
        refs = {
            invoice.body.get("invoice_ref_no", "")
            for invoice in invoices
            if invoice.body.get("invoice_type") == INVOICE_TYPE_DEBIT_NOTE
            and invoice.body.get("invoice_ref_no")
            # A reference with a NUL names no original (and PostgreSQL cannot compare it).
            and _NUL not in invoice.body.get("invoice_ref_no", "")
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

    def stored_payload(self, tenant: TenantProfile, invoice: SubmittedInvoice) -> NormalisedInvoice:
        """What is stored (and sent): the ERP's invoice plus what the tenant supplies."""
        if invoice.channel is Channel.POS:
            return with_totals(
                {**invoice.body, "pos_id": tenant.pos_id, "usin": invoice.erp_reference}
            )
        return {**invoice.body, **tenant.seller_fields()}

    def judge(self, invoice: SubmittedInvoice, batch: BatchContext) -> Verdict:
        """Everything ingest needs to know of one invoice: its payload, its error, its original.

        Violation paths are relative to the invoice (``items[0].uom``, ``pos.items[0]...``).
        """
        payload = self.stored_payload(batch.tenant, invoice)
        violations = _reference_violations(invoice.erp_reference)
        violations += _size_violations(invoice)
        violations += self._rule_violations(invoice, payload, batch)
        if violations:
            codes = sorted({v.fbr_error_code for v in violations if v.fbr_error_code})
            error = capped(
                InvoiceError(
                    reason="INVOICE_INVALID",
                    message=f"invoice failed {len(violations)} validation check(s)"
                    + (f" (FBR codes {', '.join(codes)})" if codes else ""),
                    violations=tuple(violations),
                )
            )
            return Verdict(payload, error)
        return Verdict(payload, None, self._original_of(invoice, batch))

    def _rule_violations(
        self, invoice: SubmittedInvoice, payload: NormalisedInvoice, batch: BatchContext
    ) -> list[Violation]:
        tenant_channel = batch.tenant.channel
        if invoice.channel is not tenant_channel:
            pos = tenant_channel is Channel.POS
            return [
                Violation(
                    "pos" if pos else "items",
                    "",
                    "This tenant sends to FBR's POS fiscal channel: fill `pos` (and leave the "
                    "Digital Invoicing fields empty)."
                    if pos
                    else "This tenant sends to FBR's Digital Invoicing channel: fill the "
                    "invoice fields and `items`, not `pos`.",
                )
            ]
        if invoice.channel is Channel.POS:
            return [
                Violation(
                    f"pos.{v.path}" if not v.path.startswith("usin") else "erp_reference",
                    v.fbr_error_code,
                    v.message,
                )
                for v in validate_pos_invoice(payload, batch.pos)
            ]
        return validate_invoice(payload, batch.di)

    @staticmethod
    def _original_of(invoice: SubmittedInvoice, batch: BatchContext) -> uuid.UUID | None:
        """The hub id of the accepted original a debit note names, if it is in the hub."""
        if invoice.body.get("invoice_type") != INVOICE_TYPE_DEBIT_NOTE:
            return None
        found = batch.originals.get(invoice.body.get("invoice_ref_no", ""))
        return found.invoice_id if found else None


def _reference_violations(reference: str) -> list[Violation]:
    if reference_usable(reference):
        return []
    if _NUL in reference:
        return [Violation("erp_reference", "", _NOT_STORABLE)]
    message = f"Give the ERP's own reference, 1 to {MAX_REFERENCE_LENGTH} characters."
    return [Violation("erp_reference", "", message)]


def _size_violations(invoice: SubmittedInvoice) -> list[Violation]:
    """Field lengths, text the databases can store, and the line count (names, never values)."""
    body = invoice.body
    header = {name: value for name, value in body.items() if name != "items"}
    found = [] if _plain_text(header) else _field_violations(header, "")
    items = body.get("items") or []
    if len(items) > MAX_ITEMS:
        found.append(Violation("items", "", f"Too many lines: at most {MAX_ITEMS} per invoice."))
    for index, item in enumerate(items[:MAX_ITEMS]):
        if not _plain_text(item, MAX_TEXT_LENGTH):
            found.extend(_field_violations(item, f"items[{index}]."))
    if invoice.channel is Channel.POS:
        found = [Violation(f"pos.{v.path}", "", v.message) for v in found]
    return found


def _field_violations(fields: Mapping[str, Any], prefix: str) -> list[Violation]:
    """The fields that are too long or hold a NUL, checked one by one."""
    found = []
    for name, value in fields.items():
        if not isinstance(value, str):
            continue
        if len(value) > MAX_TEXT_LENGTH:
            found.append(Violation(f"{prefix}{name}", "", _TOO_LONG))
        if _NUL in value:
            found.append(Violation(f"{prefix}{name}", "", _NOT_STORABLE))
    return found


def _plain_text(fields: Mapping[str, Any], total: int | None = None) -> bool:
    """Whether no field can be at fault, because all of the text together is not.

    That is nearly every invoice, and the joined text is measured and searched in C instead
    of field by field; fields that fail it (or hold a non-text value) are checked one by one.

    Args:
        total: the most characters all the fields together may have; None: no total (each
            field is then checked for length on its own, a pass over a few header fields).
    """
    try:
        joined = "".join(fields.values())
    except TypeError:
        return False
    if total is None:
        short = len(joined) <= MAX_TEXT_LENGTH  # all together short: each is
        return _NUL not in joined and (
            short or all(len(v) <= MAX_TEXT_LENGTH for v in fields.values())
        )
    return len(joined) <= total and _NUL not in joined
