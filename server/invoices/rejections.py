"""Bounded storage for locally rejected invoices.

A rejected invoice is kept so that the ERP can see what failed (``ListInvoices``,
``GetInvoice``) and resend a correction under the same reference; it is never sent. So it
does not need to be kept whole: what is stored is its errors, the digest of what was
submitted (``content_sha256``, which recognises an unchanged resend) and an *excerpt* of the
invoice: every header field and the first :data:`EXCERPT_LINES` lines, each text cut to
:data:`EXCERPT_CHARS` characters, with any NUL replaced so that every database can store it.
A rejected invoice therefore costs at most a few tens of kilobytes, however large it was.

On top of that each tenant has a budget of rejected bytes kept
(``FBRHUB_TENANT_MAX_REJECTED_BYTES``): once it is spent, further invalid invoices are still
answered with their errors, but not stored, and the answer says so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Text, cast, func, select

from server.db.engine import Database
from server.db.models import Invoice, InvoiceState
from server.invoices.model import InvoiceError

if TYPE_CHECKING:
    from server.invoices.storage import Candidate

EXCERPT_CHARS = 100
"""Characters kept of each text field of a rejected invoice."""
EXCERPT_LINES = 10
"""Lines kept of a rejected invoice."""
MAX_KEPT_VIOLATIONS = 100
"""Violations kept (and answered) for one rejected invoice; the count of the rest is kept."""
_REPLACEMENT = "\ufffd"
NOT_KEPT = (
    "not stored: this tenant's store of rejected invoices is full "
    "(FBRHUB_TENANT_MAX_REJECTED_BYTES); correct and resend it, nothing else is needed"
)


def _clip(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return value[:EXCERPT_CHARS].replace("\x00", _REPLACEMENT)


def excerpt(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept of a rejected invoice's payload: every field clipped, the first lines."""
    kept: dict[str, Any] = {
        _clip(name): _clip(value) for name, value in payload.items() if name != "items"
    }
    items = payload.get("items")
    if isinstance(items, list):
        kept["items"] = [
            {_clip(name): _clip(value) for name, value in item.items()}
            for item in items[:EXCERPT_LINES]
            if isinstance(item, Mapping)
        ]
    return kept


def capped(error: InvoiceError) -> InvoiceError:
    """The error with at most :data:`MAX_KEPT_VIOLATIONS` violations (the message says so)."""
    if len(error.violations) <= MAX_KEPT_VIOLATIONS:
        return error
    omitted = len(error.violations) - MAX_KEPT_VIOLATIONS
    return InvoiceError(
        error.reason,
        f"{error.message}; the first {MAX_KEPT_VIOLATIONS} are listed, {omitted} more omitted",
        error.violations[:MAX_KEPT_VIOLATIONS],
    )


def not_kept(error: InvoiceError) -> InvoiceError:
    """The error of a rejected invoice that the full rejection budget kept from being stored."""
    return InvoiceError(error.reason, f"{error.message}; {NOT_KEPT}", error.violations)


def stored_bytes(payload: Mapping[str, Any], error: InvoiceError | None) -> int:
    """What a stored rejection costs, as the JSON bytes of its payload and error."""
    size = len(orjson.dumps(payload))
    return size + (len(orjson.dumps(error.to_json())) if error is not None else 0)


class RejectionBudget:
    """How many bytes of rejected invoices each tenant has stored, against its budget.

    The stored total is read from the database when a tenant is first met and again every
    :attr:`refresh_seconds` (rows go away with corrections and retention); in between, the
    rejections this process stores are added to it, so a burst cannot run past the budget.
    """

    refresh_seconds = 60.0

    def __init__(self, db: Database, limit: int) -> None:
        """A budget of ``limit`` bytes per tenant (0: no limit, nothing is counted)."""
        self._db = db
        self.limit = limit
        self._used: dict[uuid.UUID, tuple[int, float]] = {}

    async def used(self, tenant_id: uuid.UUID) -> int:
        """The bytes of rejected invoices the tenant has stored (as last read, plus since)."""
        used, read_at = self._used.get(tenant_id, (0, float("-inf")))
        if time.monotonic() - read_at >= self.refresh_seconds:
            used = await self._read(tenant_id)
            self._used[tenant_id] = (used, time.monotonic())
        return used

    async def over_budget(
        self, tenant_id: uuid.UUID, rejected: Sequence[Candidate]
    ) -> list[Candidate]:
        """The rejections, in order, that would take the tenant past its budget.

        The others are counted as stored (the caller stores them in this batch).
        """
        if self.limit <= 0:
            return []
        used = await self.used(tenant_id)
        over: list[Candidate] = []
        for c in rejected:
            size = stored_bytes(excerpt(c.verdict.payload), c.verdict.error)
            if used + size > self.limit:
                over.append(c)
            else:
                used += size
        self._used[tenant_id] = (used, self._used[tenant_id][1])
        return over

    async def _read(self, tenant_id: uuid.UUID) -> int:
        size = func.length(cast(Invoice.payload, Text)) + func.coalesce(
            func.length(cast(Invoice.error, Text)), 0
        )
        async with self._db.read("ingest.rejected_bytes") as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(size), 0)).where(
                    Invoice.tenant_id == tenant_id,
                    Invoice.state == InvoiceState.REJECTED_LOCAL.value,
                )
            )
        return int(total or 0)
