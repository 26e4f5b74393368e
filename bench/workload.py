"""The benchmark workload: realistic ~1.5 KB DI invoices, and the hub's stored form of them.

Every benchmark uses the same invoices: an SN001 sale (registered buyer, 18%) with five
lines, built from the sample builders that the demo and the tests use, so every invoice passes
the hub's validation exactly like a real one. Serialized as protobuf each is ~1.5 KB, the size
of a typical ERP invoice of a few lines.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import orjson

from clients.fbr.payload import NormalisedInvoice
from clients.fbr.samples import SellerInfo, scenario_invoice
from fbrhub.v1 import invoice_pb2
from server.api.convert.invoices import invoice_to_proto
from server.invoices.model import SubmittedInvoice

PAKISTAN_TIME = dt.timezone(dt.timedelta(hours=5), "PKT")
SELLER = SellerInfo(
    ntn_cnic="8885801",
    business_name="Benchmark Traders (Private) Limited",
    province="PUNJAB",
    address="Plot 12, Sector 7, Korangi Industrial Area, Karachi",
)
FBR_TOKEN = "bench-sandbox-token"
LINES_PER_INVOICE = 5


def _yesterday() -> dt.date:
    return dt.datetime.now(PAKISTAN_TIME).date() - dt.timedelta(days=1)


def bench_invoice(reference: str, rng: random.Random) -> NormalisedInvoice:
    """One valid SN001 invoice with five lines (a few lines per sample call, pooled)."""
    day = _yesterday()
    invoice = scenario_invoice(
        "SN001", seller=SELLER, erp_reference=reference, invoice_date=day, rng=rng
    )
    while len(invoice["items"]) < LINES_PER_INVOICE:
        more = scenario_invoice(
            "SN001", seller=SELLER, erp_reference=reference, invoice_date=day, rng=rng
        )
        invoice["items"].extend(more["items"])
    invoice["items"] = invoice["items"][:LINES_PER_INVOICE]
    for number, item in enumerate(invoice["items"], start=1):
        # Longer, realistic descriptions (ERPs send the catalogue text), ~1.5 KB in total.
        item["product_description"] = (
            f"{item['product_description']} - catalogue line {number}, "
            f"batch {rng.randint(10000, 99999)}, packed and sealed in export cartons "
            f"as per the buyer's purchase order, with Urdu and English labels"
        )
    return invoice


def bench_invoices(prefix: str, count: int, seed: int = 1) -> list[NormalisedInvoice]:
    """``count`` invoices with references ``{prefix}-000001``..., reproducible from ``seed``."""
    rng = random.Random(seed)
    return [bench_invoice(f"{prefix}-{index:07d}", rng) for index in range(1, count + 1)]


def to_proto(invoice: NormalisedInvoice) -> invoice_pb2.Invoice:
    """The protobuf an ERP sends for ``invoice``."""
    return invoice_to_proto(SubmittedInvoice.from_normalised(invoice))


def stored_row(tenant_id: uuid.UUID, invoice: SubmittedInvoice) -> dict[str, Any]:
    """The ``invoices`` row the hub's ingest writes for ``invoice`` (for the COPY baseline).

    Mirrors ``server.invoices.storage.invoice_row`` for a valid invoice: the payload is the
    submitted invoice plus the tenant's seller block, the digest is of the submitted part.
    """
    submitted = invoice.body
    now = dt.datetime.now(dt.UTC)
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "erp_reference": invoice.erp_reference,
        "content_sha256": invoice.content_sha256(),
        "channel": "di",
        "state": "QUEUED",
        "invoice_type": submitted.get("invoice_type", "")[:16],
        "invoice_date": dt.date.fromisoformat(submitted["invoice_date"]),
        "payload": orjson.dumps(submitted).decode(),
        "attempt_count": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }
