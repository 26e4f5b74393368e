"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable

from clients.fbr.payload import NormalisedInvoice
from clients.fbr.samples import SellerInfo, scenario_invoice
from fbrhub.v1 import invoice_pb2
from server.api.convert.invoices import invoice_from_domain

PKT = dt.timezone(dt.timedelta(hours=5))


def today_pk() -> dt.date:
    """Today's date in Pakistan."""
    return dt.datetime.now(PKT).date()


def sample(
    reference: str, *, scenario: str = "SN002", ntn: str = "8885801", seed: int = 0
) -> NormalisedInvoice:
    """A valid normalised invoice for a test seller."""
    seller = SellerInfo(ntn, f"Seller {ntn}", "PUNJAB", "1 Test Road, Lahore")
    return scenario_invoice(
        scenario,
        seller=seller,
        erp_reference=reference,
        invoice_date=today_pk() - dt.timedelta(days=1),
        rng=random.Random(f"{reference}/{seed}"),
    )


def to_proto(invoice: NormalisedInvoice) -> invoice_pb2.Invoice:
    """A normalised invoice as the protobuf an ERP sends."""
    return invoice_from_domain(invoice["erp_reference"], invoice)


def proto_invoice(reference: str, **kwargs: object) -> invoice_pb2.Invoice:
    """A valid protobuf invoice."""
    return to_proto(sample(reference, **kwargs))  # type: ignore[arg-type]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, interval: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds.

    Used to wait for the asynchronous forwarder to reach a state: the condition is the
    synchronisation, the interval only bounds how often the database is asked.
    """
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)
