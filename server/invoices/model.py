"""The invoice as the hub handles it: what an ERP submitted, and what went wrong with it.

A submitted invoice is an envelope: the ERP's own reference and the FBR channel are typed
fields the hub decides on; the body is the *normalised* FBR invoice (``clients.fbr.payload``
for Digital Invoicing, ``clients.fbr.pos.payload`` for POS), a mapping of FBR's fields by our
names that the one rule table reads by name, for the hub and the FBR simulator alike.

An :class:`InvoiceError` is what the hub stores and streams about an invoice that failed:
a local rejection, FBR's rejection, a doubt, or a retryable delay; its violations are the
rule table's own :class:`~clients.fbr.rules.Violation`, all the way to the API edge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from clients.fbr.channels import Channel
from clients.fbr.payload import NormalisedInvoice
from clients.fbr.rules import Violation
from server.errors import InvalidInvoice


@dataclass(frozen=True, slots=True)
class SubmittedInvoice:
    """An invoice as the ERP sent it.

    Attributes:
        erp_reference: the ERP's own reference, unique per tenant (the idempotency key).
        channel: the FBR API the ERP filled the invoice for.
        body: the normalised invoice, without the reference and without the seller block
            (which is the tenant's).
    """

    erp_reference: str
    channel: Channel
    body: NormalisedInvoice

    @classmethod
    def from_normalised(cls, invoice: Mapping[str, Any]) -> SubmittedInvoice:
        """Split the flat form of ``clients.fbr.samples`` (reference and channel inside)."""
        body = dict(invoice)
        reference = str(body.pop("erp_reference", ""))
        channel = Channel(body.pop("channel", Channel.DI))
        return cls(reference, channel, body)

    def content_sha256(self) -> str:
        """Fingerprint of what was submitted: the same reference with other content differs.

        The channel is part of it (a POS receipt and a DI invoice are never the same
        content), folded in as the ``channel`` key POS bodies once carried, so fingerprints
        of invoices stored before the envelope existed still match.
        """
        content = self.body if self.channel is Channel.DI else {**self.body, "channel": "pos"}
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class InvoiceError:
    """Why an invoice is not (yet) accepted, as stored in ``invoices.error`` and events.

    Attributes:
        reason: UPPER_SNAKE reason (``INVOICE_INVALID``, ``ERP_REFERENCE_REUSED``,
            ``FBR_REJECTED``, ``FBR_OUTCOME_UNKNOWN``, ``FBR_UNAVAILABLE``).
        message: a summary safe to show.
        violations: the fields at fault, paths relative to the invoice (``items[2].hs_code``);
            the API prefixes ``invoices[i].`` when it answers a batch.
    """

    reason: str
    message: str
    violations: tuple[Violation, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "reason": self.reason,
            "message": self.message,
            "violations": [
                {"path": v.path, "fbr_error_code": v.fbr_error_code, "message": v.message}
                for v in self.violations
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InvoiceError:
        """The error read back from its stored form."""
        return cls(
            data.get("reason", ""),
            data.get("message", ""),
            tuple(
                Violation(v["path"], v.get("fbr_error_code", ""), v["message"])
                for v in data.get("violations", ())
            ),
        )

    def as_error(self) -> InvalidInvoice:
        """The error raised to a caller who sent this one invoice (e.g. a correction)."""
        return InvalidInvoice(self.message, self.violations)
